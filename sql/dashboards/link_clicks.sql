-- Clicks per link: one row per campaign and link target. Clicks by scanners and privacy
-- proxies (is_machine) are counted apart and left out of the human figures.
-- The caller filters (WHERE campaign_id = @campaign_id); the file stays usable as a view.
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
sends AS (
  SELECT message_id, campaign_id
  FROM recent_events
  WHERE event_type = 'send' AND message_id IS NOT NULL
)
SELECT
  COALESCE(e.campaign_id, s.campaign_id) AS campaign_id,
  e.link_url,
  COUNTIF(e.is_machine IS NOT TRUE) AS clicks,
  COUNT(DISTINCT IF(e.is_machine IS NOT TRUE, e.subscriber_id, NULL)) AS unique_clicks,
  COUNTIF(e.is_machine IS TRUE) AS machine_clicks
FROM recent_events AS e
LEFT JOIN sends AS s ON s.message_id = e.message_id
WHERE e.event_type = 'click' AND e.link_url IS NOT NULL
  AND COALESCE(e.campaign_id, s.campaign_id) IS NOT NULL
GROUP BY 1, 2
