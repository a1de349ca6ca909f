-- events_recent: the events of the last 90 days (WINDOW_DAYS in shared/analytics/sql_catalog.py),
-- one row per event_id, the first copy received, as in the `events` view. Every dashboard in
-- sql/dashboards reads it; this is its one definition (Terraform makes it a BigQuery view, local
-- mode a DuckDB view of the same text). events_raw's partition column is bounded before
-- deduplicating, so BigQuery reads those days' partitions and no others (README: What the
-- warehouse queries scan); the bound is a day wider (copies of an event are minutes apart) so
-- every copy of an event in the window is seen, and the exact 90 days are kept after.
SELECT * EXCEPT (_copy)
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY received_at, occurred_at) AS _copy
  FROM events_raw
  WHERE occurred_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 91 DAY)
)
WHERE _copy = 1 AND occurred_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 90 DAY)
