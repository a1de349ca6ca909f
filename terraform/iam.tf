# Identities and what each may do. Every grant is on the narrowest resource that has IAM; no
# identity gets roles/owner or roles/editor (tests/unit/test_terraform.py checks it).
#
#   mailpipe-<function>     one per function: only what local.function_access lists
#   mailpipe-pubsub-pusher  the identity in push OIDC tokens: run.invoker on the pushed-to functions
#   var.admin_invokers      the operators: run.invoker on the non-public HTTP functions (admin)
#   mailpipe-builder        Cloud Build for the function zips: two custom roles, what
#                           roles/run.builder holds minus what Mailpipe's builds do not use
#   Pub/Sub service agent   publisher on each dead-letter topic, subscriber on each push
#                           subscription, token creator on the pusher

locals {
  # What each function's own service account may do. The keys are exactly the topology's
  # functions and every topic is a topology topic (tests/unit/test_terraform.py checks both).
  # Read off the services each function's entry point builds (shared/bootstrap.py):
  #   publishes  topics it publishes to: roles/pubsub.publisher on each of them, nothing else
  #   firestore  "write": reads and writes documents (roles/datastore.user); "read": only reads
  #              them (roles/datastore.viewer); "": no access
  #   templates  reads the template bucket (roles/storage.objectViewer): email templates, the
  #              trigger definitions, and the HTML error page every HTTP function shows a browser
  #   warehouse  streams event rows: roles/bigquery.dataEditor on the dataset
  #   queries    runs read-only warehouse queries (segments, A/B results):
  #              roles/bigquery.dataViewer on the dataset, roles/bigquery.jobUser on
  #              the project (a query job is a project-level resource)
  #   secrets    secrets beyond local.common_secrets (dropped when the ESP in use has no such secret)
  function_access = {
    signup            = { publishes = ["subscriber-events", "analytics-events"], firestore = "write", templates = true, warehouse = false, queries = false, secrets = [] }
    confirm           = { publishes = ["subscriber-events", "analytics-events"], firestore = "write", templates = true, warehouse = false, queries = false, secrets = [] }
    preferences       = { publishes = ["subscriber-events", "analytics-events"], firestore = "write", templates = true, warehouse = false, queries = false, secrets = [] }
    unsubscribe       = { publishes = ["subscriber-events", "analytics-events"], firestore = "write", templates = true, warehouse = false, queries = false, secrets = [] }
    tracking          = { publishes = ["analytics-events"], firestore = "", templates = true, warehouse = false, queries = false, secrets = [] }
    webhooks          = { publishes = ["esp-feedback"], firestore = var.esp == "mailgun" ? "write" : "", templates = true, warehouse = false, queries = false, secrets = ["sendgrid_webhook_public_key", "mailgun_webhook_signing_key"] }
    admin             = { publishes = ["campaign-dispatch", "render-requests", "send-requests", "subscriber-events", "subscriber-imports", "analytics-events"], firestore = "write", templates = true, warehouse = false, queries = true, secrets = ["admin_api_key"] }
    events            = { publishes = ["behaviour-events", "analytics-events"], firestore = "read", templates = true, warehouse = false, queries = false, secrets = ["events_api_key"] }
    "preference-sync" = { publishes = ["render-requests", "analytics-events", "behaviour-events"], firestore = "write", templates = false, warehouse = false, queries = false, secrets = [] }
    dispatch          = { publishes = ["campaign-dispatch", "render-requests"], firestore = "write", templates = true, warehouse = false, queries = true, secrets = [] }
    render            = { publishes = ["send-requests", "analytics-events"], firestore = "", templates = true, warehouse = false, queries = false, secrets = [] }
    send              = { publishes = ["analytics-events"], firestore = "write", templates = false, warehouse = false, queries = true, secrets = ["sendgrid_api_key", "mailgun_api_key", "smtp_password", "ses_secret_access_key", "dkim_private_key"] }
    feedback          = { publishes = ["subscriber-events", "analytics-events"], firestore = "write", templates = false, warehouse = false, queries = false, secrets = [] }
    warehouse         = { publishes = [], firestore = "", templates = false, warehouse = true, queries = false, secrets = [] }
    imports           = { publishes = ["subscriber-imports", "subscriber-events", "analytics-events"], firestore = "write", templates = false, warehouse = false, queries = false, secrets = [] }
    triggers          = { publishes = ["render-requests", "analytics-events", "behaviour-events"], firestore = "write", templates = true, warehouse = false, queries = false, secrets = [] }
  }

  firestore_roles = {
    write = "roles/datastore.user"
    read  = "roles/datastore.viewer"
  }

  publisher_grants = merge([
    for name, access in local.function_access : {
      for topic in access.publishes : "${name}/${topic}" => { function = name, topic = topic }
    }
  ]...)

  pushed_functions = toset([for s in values(var.topology.subscriptions) : s.function])
  public_functions = toset([for name, f in var.topology.functions : name if f.public])

  # HTTP functions that are not public (the admin API): operators call them with their own
  # Google identity (README: the admin API).
  operator_functions = toset([for name, f in var.topology.functions : name if f.trigger_topic == null && !f.public])
  operator_grants = {
    for pair in setproduct(local.operator_functions, toset(var.admin_invokers)) :
    "${pair[0]}/${pair[1]}" => { function = pair[0], member = pair[1] }
  }
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
  # Firestore has no IAM on collections or documents, and the roles are granted on the project;
  # the condition limits each grant to Mailpipe's database, so another database in the same
  # project stays out of reach.
  for_each = { for name, access in local.function_access : name => access if access.firestore != "" }

  project = var.project_id
  role    = local.firestore_roles[each.value.firestore]
  member  = "serviceAccount:${google_service_account.function[each.key].email}"

  condition {
    title       = "mailpipe-database-only"
    description = "Only Mailpipe's Firestore database."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${google_firestore_database.main.name}\""
  }
}

resource "google_storage_bucket_iam_member" "template_reader" {
  for_each = { for name, access in local.function_access : name => access if access.templates }

  bucket = google_storage_bucket.templates.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function[each.key].email}"
}

# Import files: the admin API uploads them and reads rejects; the import function reads them
# and writes rejects. The dispatch function writes and reads campaigns' audience snapshots
# (audiences/<campaign>/...). Nothing else touches the bucket.
resource "google_storage_bucket_iam_member" "import_files" {
  for_each = toset(["admin", "imports", "dispatch"])

  bucket = google_storage_bucket.imports.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_bigquery_dataset_iam_member" "warehouse_writer" {
  for_each = { for name, access in local.function_access : name => access if access.warehouse }

  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_bigquery_dataset_iam_member" "warehouse_reader" {
  # Reads the events view and the events_raw table behind it (same dataset, so no authorized
  # view is needed).
  for_each = { for name, access in local.function_access : name => access if access.queries }

  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_project_iam_member" "warehouse_job_user" {
  # Running a query creates a job in the project; jobUser grants no access to any data.
  for_each = { for name, access in local.function_access : name => access if access.queries }

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.function[each.key].email}"
}

# --- who may invoke the functions ----------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "public_invoker" {
  # Public by design (topology public=True): the signup form, the links in mail (confirm,
  # preferences, unsubscribe, tracking pixel and redirects) and ESP webhooks. Each checks signed
  # tokens, webhook signatures or rate limits itself. With public_access =
  # "invoker_check_disabled" there is no allUsers grant (Domain Restricted Sharing refuses it):
  # invoker_check.tf turns Cloud Run's invoker check off on these functions instead.
  for_each = var.public_access == "allUsers" ? local.public_functions : toset([])

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "operator_invoker" {
  # The admin API: only the operators in var.admin_invokers, and the function checks its API
  # key as well. The identity token goes in X-Serverless-Authorization because the function
  # reads its API key from Authorization (README: the admin API).
  for_each = local.operator_grants

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function[each.value.function].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value.member
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
# roles/run.builder ("can build Cloud Run functions") is artifactregistry.repositories.
# {download,upload,delete}Artifacts, logging.logEntries.create, source.repos.get and
# storage.objects.get, all on the project. Mailpipe's builds need no Cloud Source Repositories,
# and their images go to one repository of their own, so the builder gets:
#   on the project      build logs, and reading the staged source (Cloud Functions stages it in a
#                       bucket of its own, so this one stays project-wide)
#   on the repository   pushing and pulling the function images and their build cache

resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; the images hold only Mailpipe's code, which is no secret, and a customer-managed key adds a KMS key ring.
  repository_id = "mailpipe-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "Images Cloud Build makes from the function zips."

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"

    most_recent_versions {
      keep_count = 10
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_project_iam_custom_role" "build_logs_and_sources" {
  role_id     = "mailpipeBuildLogsAndSources"
  title       = "Mailpipe function builds: logs and sources"
  description = "Write build logs and read the staged function source."
  permissions = ["logging.logEntries.create", "storage.objects.get"]

  depends_on = [google_project_service.api]
}

resource "google_project_iam_custom_role" "build_artifacts" {
  role_id     = "mailpipeBuildArtifacts"
  title       = "Mailpipe function builds: images"
  description = "Push, pull and clean up function images; granted on Mailpipe's repository only."
  permissions = [
    "artifactregistry.repositories.downloadArtifacts",
    "artifactregistry.repositories.uploadArtifacts",
    "artifactregistry.repositories.deleteArtifacts",
  ]

  depends_on = [google_project_service.api]
}

resource "google_project_iam_member" "builder" {
  project = var.project_id
  role    = google_project_iam_custom_role.build_logs_and_sources.id
  member  = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_artifact_registry_repository_iam_member" "builder" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = google_project_iam_custom_role.build_artifacts.id
  member     = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_storage_bucket_iam_member" "builder_reads_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.builder.email}"
}

# New grants take a while to reach every Google service (up to a few minutes, IAM's eventual
# consistency): builds, the functions' first starts and the push subscriptions wait for it, so a
# first apply does not fail on a grant that exists but has not propagated yet.
resource "time_sleep" "iam_propagation" {
  create_duration = "90s"

  triggers = {
    builder          = google_project_iam_member.builder.id
    builder_images   = google_artifact_registry_repository_iam_member.builder.id
    pubsub_tokens    = google_service_account_iam_member.pubsub_agent_mints_pusher_tokens.id
    dead_letter_pubs = join(",", sort([for m in google_pubsub_topic_iam_member.dead_letter_publisher : m.id]))
  }
}
