output "http_function_urls" {
  description = "URL of every HTTP function (the ones that are not pushed from Pub/Sub): on your domain for the public ones when domain is set (their own URLs then refuse outside traffic)."
  value = {
    for name, f in var.topology.functions :
    name => (local.lb_enabled && f.public ? "${local.public_url}${f.route}" : google_cloudfunctions2_function.function[name].url)
    if f.trigger_topic == null
  }
}

output "lb_ip" {
  description = "With domain set: the load balancer's address. Point the domain's DNS A record at it; the managed certificate is issued once it resolves (up to an hour or so)."
  value       = local.lb_enabled ? google_compute_global_address.lb[0].address : null
}

output "admin_api_url" {
  description = "The admin API's run.app URL; call it with an identity token in X-Serverless-Authorization and the API key in Authorization (README: the admin API)."
  value       = google_cloudfunctions2_function.function["admin"].service_config[0].uri
}

output "events_api_url" {
  description = "URL customers' systems POST behavioural events to, with Authorization: Bearer <events API key>."
  value       = local.lb_enabled ? "${local.public_url}${var.topology.functions["events"].route}" : google_cloudfunctions2_function.function["events"].url
}

output "public_base_url" {
  description = "The base URL links in mail point at (MAILPIPE_PUBLIC_URL)."
  value       = local.public_url
}

output "template_bucket" {
  description = "Bucket holding the Jinja2 templates (MAILPIPE_TEMPLATE_BUCKET)."
  value       = google_storage_bucket.templates.name
}

output "bigquery_dataset" {
  description = "Dataset of the events table and the dashboard views (project.dataset)."
  value       = "${var.project_id}.${google_bigquery_dataset.warehouse.dataset_id}"
}

output "secrets_to_fill" {
  description = "Secret Manager secrets to add a version to: until then each holds Terraform's placeholder, and what needs it fails with a log line naming it."
  value       = sort([for s in google_secret_manager_secret.setting : s.secret_id])
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions holding each push subscription's dead letters."
  value       = sort([for s in google_pubsub_subscription.dead_letter_hold : s.name])
}

output "esp_webhook_url" {
  description = "URL to register at the ESP for delivery, bounce and complaint events (the webhooks function's /<esp> route)."
  value = var.esp == "smtp" ? null : (
    local.lb_enabled ? "${local.public_url}${var.topology.functions["webhooks"].route}/${var.esp}" :
    "${google_cloudfunctions2_function.function["webhooks"].url}/${var.esp}"
  )
}
