# One Cloud Function (2nd gen) per entry of var.topology.functions, built from the reproducible
# zip `make package` writes to dist/<name>.zip. The source object's name carries the zip's
# sha256, so changed code means a new object and a redeploy, and unchanged code means no change.
#
# Every function is an HTTP function. Pub/Sub-triggered ones receive our push subscriptions
# (pubsub.tf); functions-framework converts the push envelope into the CloudEvent their
# @cloud_event decorator expects.
#
# Ingress (local.ingress): HTTP functions take traffic from anywhere, and IAM decides who may
# invoke them (iam.tf): anyone for the public ones (signup, confirm, tracking, webhooks, events
# ...), only var.admin_invokers for the rest (admin). With var.domain set, the public ones take
# traffic only from the load balancer (ALLOW_INTERNAL_AND_GCLB), so nothing bypasses it and its
# Cloud Armor policy. Pub/Sub-pushed functions are ALLOW_INTERNAL_ONLY:
# Cloud Run counts Pub/Sub push (and Cloud Scheduler, Eventarc, Workflows) from the same project
# as internal traffic when it calls the service's run.app URL, which is exactly what the push
# subscriptions use. On top of that, only the pusher service account has run.invoker on them,
# so an internal caller without that identity gets 403 as well.

locals {
  dist_dir = startswith(var.dist_dir, "/") ? var.dist_dir : "${path.module}/${var.dist_dir}"

  # Links in mail: your own domain (lb.tf), else your own balancer, else each function's URL.
  behind_balancer = var.domain != "" || var.public_base_url != ""
  public_url = (
    var.domain != "" ? "https://${var.domain}" :
    var.public_base_url != "" ? trimsuffix(var.public_base_url, "/") : local.functions_base_url
  )
  # X-Forwarded-For: Cloud Run's front end appends the client (1); a Google load balancer
  # appends "<client>,<balancer IP>" and Cloud Run then adds nothing (2). README: client addresses.
  trusted_proxy_hops = var.trusted_proxy_hops != null ? var.trusted_proxy_hops : (local.behind_balancer ? 2 : 1)

  ingress = {
    for name, f in var.topology.functions : name => (
      f.trigger_topic != null ? "ALLOW_INTERNAL_ONLY" :
      f.public && var.domain != "" ? "ALLOW_INTERNAL_AND_GCLB" : "ALLOW_ALL"
    )
  }
  sender = var.sender_name == "" ? var.sender_address : "${var.sender_name} <${var.sender_address}>"

  # Plain settings (shared/settings.py reads MAILPIPE_<FIELD>); secrets are in secrets.tf.
  esp_environment = {
    smtp = {
      MAILPIPE_SMTP_HOST     = var.smtp_host
      MAILPIPE_SMTP_PORT     = tostring(var.smtp_port)
      MAILPIPE_SMTP_USERNAME = var.smtp_username
      MAILPIPE_SMTP_STARTTLS = var.smtp_starttls ? "1" : ""
    }
    sendgrid = {}
    mailgun = {
      MAILPIPE_MAILGUN_DOMAIN = coalesce(var.mailgun_domain, var.sender_domain)
    }
    ses = {
      MAILPIPE_SES_REGION            = var.ses_region
      MAILPIPE_SES_TOPIC_ARNS        = join(",", var.ses_topic_arns)
      MAILPIPE_SES_CONFIGURATION_SET = var.ses_configuration_set
      MAILPIPE_SES_ACCESS_KEY_ID     = var.ses_access_key_id # its secret key is a secret (secrets.tf)
    }
  }

  # Without a balancer serving the local path prefixes (domain or public_base_url), every link
  # points straight at its function: MAILPIPE_URL_<ROUTE> overrides the route's base URL
  # (shared/bootstrap.py), and a route is named after its HTTP function.
  functions_base_url = "https://${var.region}-${var.project_id}.cloudfunctions.net"
  route_urls = {
    for name, f in var.topology.functions :
    "MAILPIPE_URL_${upper(name)}" => "${local.functions_base_url}/${name}"
    if f.trigger_topic == null && !local.behind_balancer
  }

  environment = merge(
    {
      MAILPIPE_BACKEND            = "gcp"
      MAILPIPE_GCP_PROJECT        = var.project_id
      MAILPIPE_GCP_REGION         = var.region
      MAILPIPE_FIRESTORE_DATABASE = google_firestore_database.main.name
      MAILPIPE_BIGQUERY_DATASET   = google_bigquery_dataset.warehouse.dataset_id
      MAILPIPE_TEMPLATE_BUCKET    = google_storage_bucket.templates.name
      MAILPIPE_IMPORT_BUCKET      = google_storage_bucket.imports.name
      MAILPIPE_ESP                = var.esp
      MAILPIPE_ESP_RATE_PER_S     = tostring(var.esp_rate_per_s)
      MAILPIPE_SENDER             = local.sender
      MAILPIPE_PUBLIC_URL         = local.public_url
      MAILPIPE_TRUSTED_PROXY_HOPS = tostring(local.trusted_proxy_hops)
      MAILPIPE_LOG_LEVEL          = var.log_level
      MAILPIPE_DKIM_SELECTOR      = var.dkim_selector # its key is a secret (secrets.tf)
      MAILPIPE_DKIM_DOMAIN        = var.dkim_domain
      MAILPIPE_DAILY_CAP          = tostring(var.daily_cap)
      MAILPIPE_WARMUP_VOLUMES     = join(",", [for v in var.warmup_volumes : tostring(v)])
      MAILPIPE_WARMUP_START       = var.warmup_start
      MALLOC_ARENA_MAX            = "2" # see shared/runner/allocator.py
    },
    local.esp_environment[var.esp],
    # Dispatch's pace: the provider's rate (services/pacing.py, README: Fan-out).
    { MAILPIPE_CAMPAIGN_SEND_RATE_PER_S = tostring(var.campaign_send_rate_per_s) },
    local.route_urls,
  )
}

resource "google_storage_bucket_object" "source" {
  for_each = var.topology.functions

  bucket = google_storage_bucket.sources.name
  name   = "functions/${each.key}/${filesha256("${local.dist_dir}/${each.key}.zip")}.zip"
  source = "${local.dist_dir}/${each.key}.zip"
}

resource "google_cloudfunctions2_function" "function" {
  #checkov:skip=CKV_GCP_124:HTTP functions must take internet traffic (forms, links in mail, ESP webhooks, the event API; the admin API for operators, IAM-restricted to var.admin_invokers); with var.domain the public ones take only the load balancer's; every Pub/Sub-pushed function is ALLOW_INTERNAL_ONLY (local.ingress, checked by tests/unit/test_terraform.py).
  for_each = var.topology.functions

  name        = each.key
  location    = var.region
  description = each.value.trigger_topic == null ? "Mailpipe ${each.key} (HTTP)" : "Mailpipe ${each.key} (pushed from ${each.value.trigger_topic})"

  build_config {
    runtime           = "python311"
    entry_point       = each.value.entry_point
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    available_memory                 = "${each.value.memory_mb}M"
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout_s
    max_instance_count               = lookup(var.max_instances, each.key, each.value.max_instances)
    min_instance_count               = lookup(var.min_instances, each.key, 0)
    max_instance_request_concurrency = each.value.concurrency
    ingress_settings                 = local.ingress[each.key]
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    # functions-framework serves as many requests at once as it has THREADS (Cloud Run
    # functions' advice: THREADS = concurrency), so the concurrency setting takes effect.
    environment_variables = merge(local.environment, { THREADS = tostring(each.value.concurrency) })

    dynamic "secret_environment_variables" {
      for_each = local.function_secrets[each.key]

      content {
        key        = "MAILPIPE_${upper(secret_environment_variables.value)}"
        project_id = var.project_id
        secret     = google_secret_manager_secret.setting[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  lifecycle {
    precondition {
      condition     = endswith(lower(var.sender_address), "@${lower(var.sender_domain)}")
      error_message = "sender_address must be an address at sender_domain."
    }

    precondition {
      # Outside AWS there is no credential chain to fall back on: SES needs an access key.
      condition     = var.esp != "ses" || var.ses_access_key_id != ""
      error_message = "esp = \"ses\" needs ses_access_key_id (its secret key goes into the mailpipe-ses-secret-access-key secret)."
    }
  }

  # Grants first (a build or a start without them fails), and every secret has a version (the
  # placeholder, secrets.tf) so no deploy waits for an operator.
  depends_on = [
    google_project_iam_member.builder,
    google_artifact_registry_repository_iam_member.builder,
    google_storage_bucket_iam_member.builder_reads_sources,
    google_secret_manager_secret_iam_member.function_reads_secret,
    google_secret_manager_secret_version.placeholder,
    time_sleep.iam_propagation,
  ]
}
