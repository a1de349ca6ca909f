-- Sending activity per minute (UTC): messages handed to the provider, failed, and suppressed
-- at send time. The caller keeps the recent minutes (WHERE minute >= @since).
-- Reads the last 90 days only (README: What the warehouse queries scan): events_raw with its
-- partition column bounded before deduplicating, so BigQuery reads those days' partitions and no
-- others. One row per event_id, the first copy received, as in the `events` view; the bound is a
-- day wider (copies of an event are minutes apart) so every copy of an event in the window is
-- seen, and the exact 90 days are kept after.
WITH recent_events AS (
  SELECT * EXCEPT (_copy)
  FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY received_at, occurred_at) AS _copy
    FROM events_raw
    WHERE occurred_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 91 DAY)
  )
  WHERE _copy = 1 AND occurred_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 90 DAY)
)
SELECT
  TIMESTAMP_TRUNC(occurred_at, MINUTE) AS minute,
  COUNTIF(event_type = 'send') AS sent,
  COUNTIF(event_type = 'send_failed') AS failed,
  COUNTIF(event_type = 'suppressed') AS suppressed
FROM recent_events
WHERE event_type IN ('send', 'send_failed', 'suppressed')
GROUP BY 1
