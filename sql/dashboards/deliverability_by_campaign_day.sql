-- Bounce and complaint rates per campaign and per day (UTC), against Gmail's lines.
-- Gmail's Email sender guidelines (support.google.com/mail/answer/81126): keep the spam
-- (complaint) rate reported in Postmaster Tools below 0.10% and never reach 0.30%. Gmail sets
-- no bounce-rate line; bounce rates are flagged against the same 0.1% / 0.3% marks only so
-- that both read on one scale.
-- complaint_rate = complaints / delivered (sent when the provider reports no deliveries, as
-- SMTP does); bounce_rate = bounces / sent. campaign_id is NULL for transactional mail.
-- Reads the last 90 days only, deduplicated: the events_recent view (sql/views/events_recent.sql,
-- README: What the warehouse queries scan), so BigQuery reads only those days' partitions.
WITH daily AS (
  SELECT
    campaign_id,
    DATE(occurred_at) AS day,
    COUNTIF(event_type = 'send') AS sent,
    COUNTIF(event_type = 'delivered') AS delivered,
    COUNTIF(event_type = 'bounce') AS bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'hard') AS hard_bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'soft') AS soft_bounces,
    COUNTIF(event_type = 'complaint') AS complaints
  FROM events_recent
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
