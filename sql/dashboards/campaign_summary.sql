-- Campaign performance, one row per campaign: what was sent and what people did with it.
-- Feedback and tracking events are attributed to a campaign through the message they are
-- about (the `send` event with the same message_id) when they carry no campaign themselves.
-- Rates are fractions (0.042 = 4.2%) and NULL when their denominator is zero.
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
totals AS (
  SELECT
    campaign_id,
    MIN(IF(event_type = 'send', occurred_at, NULL)) AS first_sent_at,
    MAX(IF(event_type = 'send', occurred_at, NULL)) AS last_sent_at,
    COUNTIF(event_type = 'send') AS sent,
    COUNTIF(event_type = 'send_failed') AS failed,
    COUNTIF(event_type = 'delivered') AS delivered,
    COUNTIF(event_type = 'bounce') AS bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'hard') AS hard_bounces,
    COUNTIF(event_type = 'bounce' AND reason = 'soft') AS soft_bounces,
    COUNTIF(event_type = 'complaint') AS complaints,
    COUNT(DISTINCT IF(event_type = 'open' AND is_human, subscriber_id, NULL)) AS unique_opens,
    COUNTIF(event_type = 'open' AND NOT is_human) AS machine_opens,
    COUNTIF(event_type = 'click' AND is_human) AS clicks,
    COUNT(DISTINCT IF(event_type = 'click' AND is_human, subscriber_id, NULL)) AS unique_clicks,
    COUNTIF(event_type = 'click' AND NOT is_human) AS machine_clicks,
    COUNT(DISTINCT IF(event_type = 'unsubscribe', subscriber_id, NULL)) AS unsubscribes
  FROM campaign_events
  WHERE campaign_id IS NOT NULL
  GROUP BY 1
)
SELECT
  *,
  SAFE_DIVIDE(delivered, sent) AS delivery_rate,
  SAFE_DIVIDE(bounces, sent) AS bounce_rate,
  SAFE_DIVIDE(complaints, delivered) AS complaint_rate,
  SAFE_DIVIDE(unique_opens, delivered) AS open_rate,
  SAFE_DIVIDE(unique_clicks, delivered) AS click_rate,
  SAFE_DIVIDE(unique_clicks, unique_opens) AS click_to_open_rate,
  SAFE_DIVIDE(unsubscribes, delivered) AS unsubscribe_rate
FROM totals
