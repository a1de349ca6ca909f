-- Behavioural triggers, one row per trigger: how its runs ended, what it sent, who clicked and
-- who converted. A conversion is a trigger mail followed, from the same subscriber within the
-- trigger's goal window, by the goal event (a `custom` event posted to /events); each mail
-- converts at most once. Each mail's goal is the one its trigger declared when it was sent: the
-- run's `mailpipe.trigger_run` row (written by the triggers function, with the same message_id
-- as the `send`) records it. Clicks by scanners and privacy proxies (is_machine) are left out.
-- Rates are fractions (0.042 = 4.2%) and NULL when nothing was sent.
-- The caller filters (WHERE trigger_id = @trigger_id); the file stays usable as a view.
-- Reads the last 90 days only, deduplicated: the events_recent view (sql/views/events_recent.sql,
-- README: What the warehouse queries scan), so BigQuery reads only those days' partitions.
WITH run_outcomes AS (
  SELECT
    trigger_id,
    reason AS outcome,
    message_id,
    JSON_VALUE(properties, '$.goal') AS goal,
    SAFE_CAST(JSON_VALUE(properties, '$.goal_within_s') AS INT64) AS goal_within_s
  FROM events_recent
  WHERE event_type = 'custom' AND trigger_id IS NOT NULL
    AND JSON_VALUE(properties, '$.name') = 'mailpipe.trigger_run'
),
sends AS (
  SELECT s.trigger_id, s.subscriber_id, s.message_id, s.occurred_at, r.goal, r.goal_within_s
  FROM events_recent AS s
  LEFT JOIN run_outcomes AS r ON r.message_id = s.message_id
  WHERE s.event_type = 'send' AND s.trigger_id IS NOT NULL
),
sent AS (
  SELECT trigger_id, COUNT(*) AS sent
  FROM sends
  GROUP BY 1
),
outcomes AS (
  SELECT
    trigger_id,
    COUNT(*) AS runs,
    COUNTIF(outcome = 'cancelled') AS cancelled,
    COUNTIF(outcome = 'capped') AS capped,
    COUNTIF(outcome = 'skipped') AS skipped,
    COUNTIF(outcome = 'failed') AS failed
  FROM run_outcomes
  GROUP BY 1
),
clicks AS (
  SELECT s.trigger_id, COUNT(*) AS clicks, COUNT(DISTINCT c.subscriber_id) AS unique_clicks
  FROM events_recent AS c
  JOIN sends AS s ON s.message_id = c.message_id
  WHERE c.event_type = 'click' AND c.is_machine IS NOT TRUE
  GROUP BY 1
),
conversions AS (
  SELECT s.trigger_id, COUNT(DISTINCT s.message_id) AS conversions
  FROM sends AS s
  JOIN events_recent AS g
    ON g.subscriber_id = s.subscriber_id
    AND g.event_type = 'custom' AND g.trigger_id IS NULL
    AND JSON_VALUE(g.properties, '$.name') = s.goal
    AND g.occurred_at > s.occurred_at
    AND g.occurred_at <= TIMESTAMP_ADD(s.occurred_at, INTERVAL s.goal_within_s SECOND)
  GROUP BY 1
),
triggers AS (
  SELECT trigger_id FROM outcomes
  UNION DISTINCT
  SELECT trigger_id FROM sent
)
SELECT
  t.trigger_id,
  COALESCE(o.runs, 0) AS runs,
  COALESCE(n.sent, 0) AS sent,
  COALESCE(o.cancelled, 0) AS cancelled,
  COALESCE(o.capped, 0) AS capped,
  COALESCE(o.skipped, 0) AS skipped,
  COALESCE(o.failed, 0) AS failed,
  COALESCE(c.clicks, 0) AS clicks,
  COALESCE(c.unique_clicks, 0) AS unique_clicks,
  COALESCE(cv.conversions, 0) AS conversions,
  SAFE_DIVIDE(COALESCE(c.unique_clicks, 0), n.sent) AS click_rate,
  SAFE_DIVIDE(COALESCE(cv.conversions, 0), n.sent) AS conversion_rate
FROM triggers AS t
LEFT JOIN outcomes AS o ON o.trigger_id = t.trigger_id
LEFT JOIN sent AS n ON n.trigger_id = t.trigger_id
LEFT JOIN clicks AS c ON c.trigger_id = t.trigger_id
LEFT JOIN conversions AS cv ON cv.trigger_id = t.trigger_id
