-- Clicks per link: one row per campaign and link target. Clicks by scanners and privacy
-- proxies (is_machine) are counted apart and left out of the human figures.
-- The caller filters (WHERE campaign_id = @campaign_id); the file stays usable as a view.
-- Reads the last 90 days only, deduplicated: the events_recent view (sql/views/events_recent.sql,
-- README: What the warehouse queries scan), so BigQuery reads only those days' partitions.
WITH sends AS (
  SELECT message_id, campaign_id
  FROM events_recent
  WHERE event_type = 'send' AND message_id IS NOT NULL
)
SELECT
  COALESCE(e.campaign_id, s.campaign_id) AS campaign_id,
  e.link_url,
  COUNTIF(e.is_machine IS NOT TRUE) AS clicks,
  COUNT(DISTINCT IF(e.is_machine IS NOT TRUE, e.subscriber_id, NULL)) AS unique_clicks,
  COUNTIF(e.is_machine IS TRUE) AS machine_clicks
FROM events_recent AS e
LEFT JOIN sends AS s ON s.message_id = e.message_id
WHERE e.event_type = 'click' AND e.link_url IS NOT NULL
  AND COALESCE(e.campaign_id, s.campaign_id) IS NOT NULL
GROUP BY 1, 2
