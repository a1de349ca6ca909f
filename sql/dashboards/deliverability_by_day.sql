-- Deliverability health: one row per day (UTC) and mailbox provider (gmail, outlook, yahoo,
-- icloud, other), over all campaigns and transactional mail. Mailbox providers start
-- filtering senders whose complaint rate passes 0.1% and block above 0.3%.
-- bounce_rate = bounces / sent and complaint_rate = complaints / delivered, both for that day.
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
),
daily AS (
  SELECT
    DATE(occurred_at) AS day,
    COALESCE(mailbox_provider, 'other') AS mailbox_provider,
    COUNTIF(event_type = 'send') AS sent,
    COUNTIF(event_type = 'delivered') AS delivered,
    COUNTIF(event_type = 'bounce') AS bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'hard') AS hard_bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'soft') AS soft_bounces,
    COUNTIF(event_type = 'complaint') AS complaints
  FROM recent_events
  WHERE event_type IN ('send', 'delivered', 'bounce', 'complaint')
  GROUP BY 1, 2
)
SELECT
  *,
  SAFE_DIVIDE(bounces, sent) AS bounce_rate,
  SAFE_DIVIDE(hard_bounces, sent) AS hard_bounce_rate,
  SAFE_DIVIDE(complaints, delivered) AS complaint_rate
FROM daily
