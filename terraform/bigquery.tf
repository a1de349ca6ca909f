# The event warehouse: one partitioned table the warehouse function streams into (events_raw),
# the `events` view that removes redeliveries from all of it (for all-time questions: GDPR export,
# ad hoc queries), the `events_recent` view (sql/views/events_recent.sql) that deduplicates only
# the days the dashboards show so that BigQuery reads only their partitions, and one view per
# dashboard query in sql/dashboards/*.sql, each reading events_recent.

locals {
  dashboards_dir = "${path.module}/../sql/dashboards"
  dataset_ref    = "${var.project_id}.${google_bigquery_dataset.warehouse.dataset_id}"
  events_table   = "`${local.dataset_ref}.${google_bigquery_table.events_raw.table_id}`"
  recent_view    = "`${local.dataset_ref}.${google_bigquery_table.events_recent.table_id}`"
}

resource "google_bigquery_dataset" "warehouse" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption; the rows hold keyed hashes, not addresses, and a customer-managed key adds KMS operations to every streamed row.
  dataset_id  = var.bigquery_dataset
  location    = var.bigquery_location != "" ? var.bigquery_location : var.region
  description = "Mailpipe events and dashboard views."

  # Time travel keeps the old version of every row an erasure changed for this long; lower it
  # to shorten how long erased personal data stays recoverable (README: GDPR).
  max_time_travel_hours = tostring(var.max_time_travel_hours)

  delete_contents_on_destroy = false

  depends_on = [google_project_service.api]
}

resource "google_bigquery_table" "events_raw" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption; see the dataset.
  dataset_id          = google_bigquery_dataset.warehouse.dataset_id
  table_id            = "events_raw"
  description         = "One row per event (shared/domain/events.py); delivery is at least once, so read the events view."
  deletion_protection = var.deletion_protection
  schema              = file("${path.module}/schemas/events.json")
  clustering          = ["event_type", "campaign_id"]

  time_partitioning {
    type  = "DAY"
    field = "occurred_at"
  }
}

# The subscriber mirror (shared/domain/subscriber_mirror.py): one row per change of a subscriber
# document, streamed by the warehouse function from `subscriber_changed` events. The latest row
# per subscriber_id is the current state; campaigns select their audience from it by SQL
# (shared/services/audience_sql.py) instead of reading every Firestore document.
resource "google_bigquery_table" "subscribers_raw" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption; see the dataset.
  dataset_id          = google_bigquery_dataset.warehouse.dataset_id
  table_id            = "subscribers_raw"
  description         = "Subscriber mirror: one row per change; the latest row per subscriber_id is the state (README: how the audience is chosen)."
  deletion_protection = var.deletion_protection
  schema              = file("${path.module}/schemas/subscribers.json")
  clustering          = ["subscriber_id"]

  time_partitioning {
    type  = "DAY"
    field = "changed_at"
  }
}

resource "google_bigquery_table" "events" {
  #checkov:skip=CKV_GCP_80:A view stores no data to encrypt.
  #checkov:skip=CKV_GCP_121:A view holds no data and is recreated from code; protection would only block removing a dashboard.
  dataset_id          = google_bigquery_dataset.warehouse.dataset_id
  table_id            = "events"
  description         = "events_raw with one row per event_id (the first one received), all time: it reads every partition."
  deletion_protection = false

  view {
    use_legacy_sql = false
    query          = <<-SQL
      SELECT * EXCEPT (_copy)
      FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY received_at, occurred_at) AS _copy
        FROM ${local.events_table}
      )
      WHERE _copy = 1
    SQL
  }
}

resource "google_bigquery_table" "events_recent" {
  #checkov:skip=CKV_GCP_80:A view stores no data to encrypt.
  #checkov:skip=CKV_GCP_121:A view holds no data and is recreated from code; protection would only block removing a dashboard.
  dataset_id          = google_bigquery_dataset.warehouse.dataset_id
  table_id            = "events_recent"
  description         = "The last 90 days of events_raw, one row per event_id (the first one received): what every dashboard view reads."
  deletion_protection = false

  view {
    use_legacy_sql = false
    # The file says `events_raw`, as the local DuckDB run does; a view must name the dataset.
    # It bounds the partition column before deduplicating (README).
    query = replace(
      file("${path.module}/../sql/views/events_recent.sql"),
      "/\\b(FROM|JOIN)\\s+events_raw\\b/",
      "$1 ${local.events_table}",
    )
  }
}

resource "google_bigquery_table" "dashboard" {
  #checkov:skip=CKV_GCP_80:A view stores no data to encrypt.
  #checkov:skip=CKV_GCP_121:A view holds no data and is recreated from code; protection would only block removing a dashboard.
  for_each = fileset(local.dashboards_dir, "*.sql")

  dataset_id          = google_bigquery_dataset.warehouse.dataset_id
  table_id            = trimsuffix(each.value, ".sql")
  description         = "Dashboard view from sql/dashboards/${each.value}."
  deletion_protection = false

  view {
    use_legacy_sql = false
    # The .sql files say `events_recent`, as the local DuckDB run does; a view must name the
    # dataset.
    query = replace(
      file("${local.dashboards_dir}/${each.value}"),
      "/\\b(FROM|JOIN)\\s+events_recent\\b/",
      "$1 ${local.recent_view}",
    )
  }
}
