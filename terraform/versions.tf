# Terraform, the Google provider, and the Google APIs the rest of this module relies on.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0" # one major version: 7.x, never 8 without a review
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.12" # time_sleep: waits for IAM grants to propagate (iam.tf)
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge({ app = "mailpipe" }, var.labels)
}

data "google_project" "this" {
  # Reading the project needs the Cloud Resource Manager API: read it only once the API is on,
  # or a first plan in a fresh project fails.
  project_id = var.project_id

  depends_on = [google_project_service.api["cloudresourcemanager.googleapis.com"]]
}

locals {
  apis = toset([
    "artifactregistry.googleapis.com", # images built from the function zips
    "bigquery.googleapis.com",
    "billingbudgets.googleapis.com", # the optional budget (monitoring.tf)
    "cloudbuild.googleapis.com",     # Cloud Functions builds the zips with Cloud Build
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com", # data.google_project, project IAM grants
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com", # the optional load balancer (lb.tf)
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",    # log-based metrics
    "monitoring.googleapis.com", # alert policies, dashboard
    "pubsub.googleapis.com",
    "run.googleapis.com", # 2nd gen functions are Cloud Run services
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  # The Pub/Sub service agent: it forwards dead letters and mints the push OIDC tokens.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_project_service" "api" {
  # Everything else depends on these (depends_on), so one apply enables them first.
  for_each = local.apis

  project            = var.project_id
  service            = each.key
  disable_on_destroy = false
}
