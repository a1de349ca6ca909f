# Identities and what each may do. Every grant is on the narrowest resource that has IAM; no
# identity gets roles/owner or roles/editor (tests/unit/test_terraform.py checks it).
#
#   mailpipe-<function>     one per function: only what local.function_access lists
#   mailpipe-pubsub-pusher  the identity in push OIDC tokens: run.invoker on the pushed-to functions
#   mailpipe-builder        Cloud Build for the function zips: roles/run.builder
#   Pub/Sub service agent   publisher on each dead-letter topic, subscriber on each push
#                           subscription, token creator on the pusher

locals {
  # What each function's own service account may do. The keys are exactly the topology's
  # functions and every topic is a topology topic (tests/unit/test_terraform.py checks both).
  # Read off shared/services (what each function's services publish and use); dispatch gets
  # Firestore and analytics-events ahead of the campaign engine (issue 4).
  #   publishes  topics it publishes to: roles/pubsub.publisher on each of them, nothing else
  #   firestore  reads and writes documents: roles/datastore.user
  #   templates  reads templates: roles/storage.objectViewer on the template bucket
  #   warehouse  streams event rows: roles/bigquery.dataEditor on the dataset
  #   secrets    secrets beyond local.common_secrets (dropped when the ESP in use has no such secret)
  function_access = {
    signup            = { publishes = ["subscriber-events"], firestore = true, templates = true, warehouse = false, secrets = [] }
    confirm           = { publishes = ["subscriber-events"], firestore = true, templates = true, warehouse = false, secrets = [] }
    preferences       = { publishes = ["subscriber-events"], firestore = true, templates = true, warehouse = false, secrets = [] }
    unsubscribe       = { publishes = ["subscriber-events"], firestore = true, templates = true, warehouse = false, secrets = [] }
    tracking          = { publishes = ["analytics-events"], firestore = false, templates = false, warehouse = false, secrets = [] }
    webhooks          = { publishes = ["esp-feedback"], firestore = false, templates = false, warehouse = false, secrets = ["sendgrid_webhook_public_key", "mailgun_webhook_signing_key"] }
    "preference-sync" = { publishes = ["render-requests", "analytics-events"], firestore = true, templates = false, warehouse = false, secrets = [] }
    dispatch          = { publishes = ["render-requests", "analytics-events"], firestore = true, templates = false, warehouse = false, secrets = [] }
    render            = { publishes = ["send-requests", "analytics-events"], firestore = false, templates = true, warehouse = false, secrets = [] }
    send              = { publishes = ["analytics-events"], firestore = true, templates = false, warehouse = false, secrets = ["sendgrid_api_key", "mailgun_api_key", "smtp_password"] }
    feedback          = { publishes = ["subscriber-events", "analytics-events"], firestore = true, templates = false, warehouse = false, secrets = [] }
    warehouse         = { publishes = [], firestore = false, templates = false, warehouse = true, secrets = [] }
  }

  publisher_grants = merge([
    for name, access in local.function_access : {
      for topic in access.publishes : "${name}/${topic}" => { function = name, topic = topic }
    }
  ]...)

  pushed_functions = toset([for s in values(var.topology.subscriptions) : s.function])
  public_functions = toset([for name, f in var.topology.functions : name if f.public])
}

# --- service accounts -------------------------------------------------------------------------

resource "google_service_account" "function" {
  for_each = var.topology.functions

  account_id   = "mailpipe-${each.key}"
  display_name = "Mailpipe function ${each.key}"
  description  = "Runtime identity of the ${each.key} function; grants in terraform/iam.tf."

  depends_on = [google_project_service.api]
}

resource "google_service_account" "pusher" {
  account_id   = "mailpipe-pubsub-pusher"
  display_name = "Mailpipe Pub/Sub push"
  description  = "Identity in the OIDC token of every push subscription; may only invoke the pushed-to functions."

  depends_on = [google_project_service.api]
}

resource "google_service_account" "builder" {
  account_id   = "mailpipe-builder"
  display_name = "Mailpipe function builds"
  description  = "Cloud Build identity that turns the function zips into images."

  depends_on = [google_project_service.api]
}

# --- the functions' own identities ---------------------------------------------------------

resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = local.publisher_grants

  topic  = google_pubsub_topic.topic[each.value.topic].name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

resource "google_project_iam_member" "firestore_user" {
  # Firestore has no IAM on databases, collections or documents: roles/datastore.user on the
  # project is the narrowest grant that lets a function read and write documents.
  for_each = { for name, access in local.function_access : name => access if access.firestore }

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_storage_bucket_iam_member" "template_reader" {
  for_each = { for name, access in local.function_access : name => access if access.templates }

  bucket = google_storage_bucket.templates.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_bigquery_dataset_iam_member" "warehouse_writer" {
  for_each = { for name, access in local.function_access : name => access if access.warehouse }

  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.function[each.key].email}"
}

# --- who may invoke the functions ----------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "public_invoker" {
  # Public by design (topology public=True): the signup form, the links in mail (confirm,
  # preferences, unsubscribe, tracking pixel and redirects) and ESP webhooks. Each checks signed
  # tokens, webhook signatures or rate limits itself.
  for_each = local.public_functions

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "pusher_invoker" {
  for_each = local.pushed_functions

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pusher.email}"
}

# --- the Pub/Sub service agent -------------------------------------------------------------

resource "google_service_account_iam_member" "pubsub_agent_mints_pusher_tokens" {
  # Needed in projects created before April 2021; harmless in newer ones.
  service_account_id = google_service_account.pusher.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = var.topology.subscriptions

  topic  = google_pubsub_topic.dead_letter[each.key].name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  # Lets the service agent acknowledge what it forwarded to the dead-letter topic.
  for_each = var.topology.subscriptions

  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- builds --------------------------------------------------------------------------------

resource "google_project_iam_member" "builder" {
  # Artifact Registry upload/download, build logs, and reading the staged source: what Cloud
  # Build needs to build a function, without the broad default build identity.
  project = var.project_id
  role    = "roles/run.builder"
  member  = "serviceAccount:${google_service_account.builder.email}"
}
