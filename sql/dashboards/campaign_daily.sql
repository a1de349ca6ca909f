-- Campaign performance over time: one row per campaign and day (UTC) on which anything
-- happened. "Unique" figures count people per day, so a person who opens on two days counts
-- on both; campaign_summary has the campaign-wide unique figures.
-- The caller filters (WHERE campaign_id = @campaign_id); the file stays usable as a view.
-- Reads the last 90 days only, deduplicated: the events_recent view (sql/views/events_recent.sql,
-- README: What the warehouse queries scan), so BigQuery reads only those days' partitions.
WITH sends AS (
  SELECT message_id, campaign_id
  FROM events_recent
  WHERE event_type = 'send' AND message_id IS NOT NULL
),
campaign_events AS (
  SELECT
    COALESCE(e.campaign_id, s.campaign_id) AS campaign_id,
    e.event_type,
    e.occurred_at,
    e.subscriber_id,
    e.reason,
    e.is_machine IS NOT TRUE AS is_human
  FROM events_recent AS e
  LEFT JOIN sends AS s ON s.message_id = e.message_id
),
daily AS (
  SELECT
    campaign_id,
    DATE(occurred_at) AS day,
    COUNTIF(event_type = 'send') AS sent,
    COUNTIF(event_type = 'delivered') AS delivered,
    COUNTIF(event_type = 'bounce') AS bounces,
    COUNTIF(event_type = 'complaint') AS complaints,
    COUNT(DISTINCT IF(event_type = 'open' AND is_human, subscriber_id, NULL)) AS unique_opens,
    COUNTIF(event_type = 'open' AND NOT is_human) AS machine_opens,
    COUNTIF(event_type = 'click' AND is_human) AS clicks,
    COUNT(DISTINCT IF(event_type = 'click' AND is_human, subscriber_id, NULL)) AS unique_clicks,
    COUNT(DISTINCT IF(event_type = 'unsubscribe', subscriber_id, NULL)) AS unsubscribes
  FROM campaign_events
  WHERE campaign_id IS NOT NULL
  GROUP BY 1, 2
)
SELECT
  *,
  SAFE_DIVIDE(unique_clicks, delivered) AS click_rate,
  SAFE_DIVIDE(unique_clicks, unique_opens) AS click_to_open_rate
FROM daily
