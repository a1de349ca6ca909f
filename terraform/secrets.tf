# Secret Manager secrets, one per secret setting (MAILPIPE_<FIELD> in shared/settings.py).
# Terraform never sees their values: an operator adds versions with `gcloud secrets versions add`
# (README: secrets). So that one apply works before any value exists, Terraform gives each
# secret a first version holding a placeholder (settings.UNSET_SECRET); a function reads it as
# "not set": it starts, and what needs the value fails at use with a log line naming the secret
# to fill (signing and hash key: every request; an API key: 503; an ESP key: sending). Each
# function's service account may read only the secrets in its entry of local.function_access.

locals {
  # shared/settings.py refuses to start with backend=gcp unless both are set, so every function
  # gets them.
  common_secrets = ["signing_key", "hash_key"]

  # The API keys callers present as `Authorization: Bearer <key>`: the admin API (admin) and
  # behavioural event intake (events). Each function refuses requests (503) while its key is
  # empty.
  api_secrets = ["admin_api_key", "events_api_key"]

  # Credentials of the ESP in use. SES webhooks are authenticated by SNS topic ARN and
  # signature, so SES has only the sending credential (its access key id is a plain variable).
  esp_secrets = {
    smtp     = ["smtp_password"]
    sendgrid = ["sendgrid_api_key", "sendgrid_webhook_public_key"]
    mailgun  = ["mailgun_api_key", "mailgun_webhook_signing_key"]
    ses      = ["ses_secret_access_key"]
  }

  # Must equal shared/settings.py UNSET_SECRET (tests/unit/test_terraform.py checks it).
  unset_secret = "unset: add a version to this secret"

  # The DKIM private key Mailpipe signs with, when a selector is configured (send reads it).
  dkim_secrets = var.dkim_selector == "" ? [] : ["dkim_private_key"]

  secret_settings = concat(local.common_secrets, local.api_secrets, local.esp_secrets[var.esp], local.dkim_secrets)

  # function -> the secret settings it receives as environment variables.
  function_secrets = {
    for name, access in local.function_access :
    name => [for s in concat(local.common_secrets, access.secrets) : s if contains(local.secret_settings, s)]
  }

  secret_grants = merge([
    for name, secrets in local.function_secrets : {
      for s in secrets : "${name}/${s}" => { function = name, secret = s }
    }
  ]...)
}

resource "google_secret_manager_secret" "setting" {
  for_each = toset(local.secret_settings)

  secret_id = "mailpipe-${replace(each.key, "_", "-")}"

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_iam_member" "function_reads_secret" {
  for_each = local.secret_grants

  secret_id = google_secret_manager_secret.setting[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

resource "google_secret_manager_secret_version" "placeholder" {
  # Version 1 of every secret; the operator's `gcloud secrets versions add` makes the real value
  # `latest`. Never changed by Terraform afterwards.
  for_each = toset(local.secret_settings)

  secret      = google_secret_manager_secret.setting[each.key].id
  secret_data = local.unset_secret

  lifecycle {
    ignore_changes = [secret_data, enabled]
  }
}
