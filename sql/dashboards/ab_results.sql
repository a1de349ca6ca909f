-- A/B test results: one row per campaign and variant. Feedback and tracking events get the
-- variant of the `send` event for the same message_id. The confidence intervals and the
-- winner verdict are computed from these counts by the caller (shared/analytics/stats.py).
-- The caller filters (WHERE campaign_id = @campaign_id); the file stays usable as a view.
-- Reads the last 90 days only, deduplicated: the events_recent view (sql/views/events_recent.sql,
-- README: What the warehouse queries scan), so BigQuery reads only those days' partitions.
WITH sends AS (
  SELECT message_id, campaign_id, variant
  FROM events_recent
  WHERE event_type = 'send' AND message_id IS NOT NULL
),
campaign_events AS (
  SELECT
    COALESCE(e.campaign_id, s.campaign_id) AS campaign_id,
    COALESCE(e.variant, s.variant) AS variant,
    e.event_type,
    e.subscriber_id,
    e.is_machine IS NOT TRUE AS is_human
  FROM events_recent AS e
  LEFT JOIN sends AS s ON s.message_id = e.message_id
),
variants AS (
  SELECT
    campaign_id,
    variant,
    COUNTIF(event_type = 'send') AS sent,
    COUNTIF(event_type = 'delivered') AS delivered,
    COUNTIF(event_type = 'bounce') AS bounces,
    COUNTIF(event_type = 'complaint') AS complaints,
    COUNT(DISTINCT IF(event_type = 'open' AND is_human, subscriber_id, NULL)) AS unique_opens,
    COUNT(DISTINCT IF(event_type = 'click' AND is_human, subscriber_id, NULL)) AS unique_clicks,
    COUNT(DISTINCT IF(event_type = 'unsubscribe', subscriber_id, NULL)) AS unsubscribes
  FROM campaign_events
  WHERE campaign_id IS NOT NULL AND variant IS NOT NULL
  GROUP BY 1, 2
)
SELECT
  *,
  SAFE_DIVIDE(unique_opens, delivered) AS open_rate,
  SAFE_DIVIDE(unique_clicks, delivered) AS click_rate,
  SAFE_DIVIDE(unique_clicks, unique_opens) AS click_to_open_rate
FROM variants
