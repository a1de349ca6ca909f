# Firestore (native mode): subscribers, consent, tokens, suppressions, idempotency ledgers.

resource "google_firestore_database" "main" {
  name                              = "(default)"
  location_id                       = var.firestore_location != "" ? var.firestore_location : var.region
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED" # 7 days of versions to recover from a bad write
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.api]
}

# No TTL policies (google_firestore_field ttl_config) yet: the documents that expire
# (rate_limits, webhook_tokens, tokens) keep `expires_at` as epoch seconds, a number, and
# Firestore's TTL deletes only documents whose TTL field holds a Timestamp, so a policy would
# never fire (README: Firestore). The code refuses expired documents itself either way.

# Composite indexes. The document store adapter (shared/adapters/gcp/firestore_documents.py)
# orders every query by document id, and a query with a range filter by (that field, id).
# Equality filters alone, or one range filter alone, are served by Firestore's automatic
# single-field indexes (several equality filters by merging them); an equality filter combined
# with a range filter on another field needs a composite index, or the query fails with
# FAILED_PRECONDITION. tests/unit/test_terraform.py derives the required indexes from the
# Filter lists in shared/ and checks this map against them.
locals {
  # name => the collection and its fields in index order (all ascending, then __name__).
  firestore_indexes = {
    # TriggerRuns.ready: waiting runs that are due (state == waiting, due_at <= now).
    trigger_runs_due = { collection = "trigger_runs", fields = ["state", "due_at"] }
    # TriggerRuns.ready: sending runs whose sweep died (state == sending, claim_until <= now).
    trigger_runs_stalled = { collection = "trigger_runs", fields = ["state", "claim_until"] }
    # TriggerRuns.waiting, on every behaviour event: three equality filters, which merged
    # single-field indexes could serve, but this one lookup per event is then one index scan
    # instead of a merge through every waiting run.
    trigger_runs_waiting = { collection = "trigger_runs", fields = ["subscriber_id", "trigger_id", "state"] }
    # Subscribers.confirmed_count, before a campaign's audience snapshot: a count aggregation
    # (status == confirmed, confirmed_at <= the audience time) compared with the mirror's.
    subscribers_confirmed = { collection = "subscribers", fields = ["status", "confirmed_at"] }
  }
}

resource "google_firestore_index" "query" {
  for_each = local.firestore_indexes

  database    = google_firestore_database.main.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    # __name__ last and ascending, as the queries order by document id; written out because
    # Firestore adds it anyway and a missing entry would show as a change on every plan.
    for_each = concat(each.value.fields, ["__name__"])

    content {
      field_path = fields.value
      order      = "ASCENDING"
    }
  }
}
