-- Sending activity per minute (UTC): messages handed to the provider, failed, and suppressed
-- at send time. The caller keeps the recent minutes (WHERE minute >= @since).
-- Reads the last 90 days only, deduplicated: the events_recent view (sql/views/events_recent.sql,
-- README: What the warehouse queries scan), so BigQuery reads only those days' partitions.
SELECT
  TIMESTAMP_TRUNC(occurred_at, MINUTE) AS minute,
  COUNTIF(event_type = 'send') AS sent,
  COUNTIF(event_type = 'send_failed') AS failed,
  COUNTIF(event_type = 'suppressed') AS suppressed
FROM events_recent
WHERE event_type IN ('send', 'send_failed', 'suppressed')
GROUP BY 1
