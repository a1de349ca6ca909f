# Buckets: the Jinja2 templates the functions render, and the function zips Cloud Build reads.

locals {
  templates_dir = "${path.module}/../templates"

  content_types = {
    css  = "text/css"
    gif  = "image/gif"
    html = "text/html; charset=utf-8"
    j2   = "text/plain; charset=utf-8"
    jpg  = "image/jpeg"
    json = "application/json"
    png  = "image/png"
    svg  = "image/svg+xml"
    txt  = "text/plain; charset=utf-8"
  }
}

resource "google_storage_bucket" "templates" {
  #checkov:skip=CKV_GCP_62:Access logs would need a third bucket (which itself would be flagged); Cloud Audit Logs record template changes.
  name                        = "${var.project_id}-mailpipe-templates"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true # a bad template upload can be rolled back
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 20
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket" "imports" {
  #checkov:skip=CKV_GCP_62:Access logs would need a third bucket (which itself would be flagged); Cloud Audit Logs record access.
  #checkov:skip=CKV_GCP_78:Import files are written once and deleted by the lifecycle rule; versions would keep addresses longer.
  name                        = "${var.project_id}-mailpipe-imports"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  lifecycle_rule { # import files hold addresses: kept 30 days for rejects and re-runs
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_object" "template" {
  for_each = fileset(local.templates_dir, "**")

  bucket       = google_storage_bucket.templates.name
  name         = each.value
  source       = "${local.templates_dir}/${each.value}"
  content_type = lookup(local.content_types, lower(element(split(".", each.value), length(split(".", each.value)) - 1)), "application/octet-stream")
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Access logs would need a third bucket (which itself would be flagged); only Cloud Build reads these zips.
  name                        = "${var.project_id}-mailpipe-sources"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # only build inputs: `make package` recreates them

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}
