-- Bounce and complaint rates per campaign and per day (UTC), against Gmail's lines.
-- Gmail's Email sender guidelines (support.google.com/mail/answer/81126): keep the spam
-- (complaint) rate reported in Postmaster Tools below 0.10% and never reach 0.30%. Gmail sets
-- no bounce-rate line; bounce rates are flagged against the same 0.1% / 0.3% marks only so
-- that both read on one scale.
-- complaint_rate = complaints / delivered (sent when the provider reports no deliveries, as
-- SMTP does); bounce_rate = bounces / sent. campaign_id is NULL for transactional mail.
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
    campaign_id,
    DATE(occurred_at) AS day,
    COUNTIF(event_type = 'send') AS sent,
    COUNTIF(event_type = 'delivered') AS delivered,
    COUNTIF(event_type = 'bounce') AS bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'hard') AS hard_bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'soft') AS soft_bounces,
    COUNTIF(event_type = 'complaint') AS complaints
  FROM recent_events
  WHERE event_type IN ('send', 'delivered', 'bounce', 'complaint')
  GROUP BY campaign_id, day
),
rates AS (
  SELECT
    *,
    SAFE_DIVIDE(bounces, sent) AS bounce_rate,
    SAFE_DIVIDE(complaints, IF(delivered > 0, delivered, sent)) AS complaint_rate
  FROM daily
)
SELECT
  *,
  COALESCE(complaint_rate >= 0.001, FALSE) AS complaint_over_recommended,
  COALESCE(complaint_rate >= 0.003, FALSE) AS complaint_over_maximum,
  COALESCE(bounce_rate >= 0.001, FALSE) AS bounce_over_recommended,
  COALESCE(bounce_rate >= 0.003, FALSE) AS bounce_over_maximum
FROM rates
