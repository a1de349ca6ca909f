-- Deliverability health: one row per day (UTC) and mailbox provider (gmail, outlook, yahoo,
-- icloud, other), over all campaigns and transactional mail. Mailbox providers start
-- filtering senders whose complaint rate passes 0.1% and block above 0.3%.
-- bounce_rate = bounces / sent and complaint_rate = complaints / delivered, both for that day.
-- Reads the last 90 days only, deduplicated: the events_recent view (sql/views/events_recent.sql,
-- README: What the warehouse queries scan), so BigQuery reads only those days' partitions.
WITH daily AS (
  SELECT
    DATE(occurred_at) AS day,
    COALESCE(mailbox_provider, 'other') AS mailbox_provider,
    COUNTIF(event_type = 'send') AS sent,
    COUNTIF(event_type = 'delivered') AS delivered,
    COUNTIF(event_type = 'bounce') AS bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'hard') AS hard_bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'soft') AS soft_bounces,
    COUNTIF(event_type = 'complaint') AS complaints
  FROM events_recent
  WHERE event_type IN ('send', 'delivered', 'bounce', 'complaint')
  GROUP BY 1, 2
)
SELECT
  *,
  SAFE_DIVIDE(bounces, sent) AS bounce_rate,
  SAFE_DIVIDE(hard_bounces, sent) AS hard_bounce_rate,
  SAFE_DIVIDE(complaints, delivered) AS complaint_rate
FROM daily
