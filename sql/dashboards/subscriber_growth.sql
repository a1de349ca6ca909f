-- Subscriber growth and churn: one row per day (UTC) on which anyone signed up, confirmed,
-- unsubscribed or was erased. `subscribers` is the running total of confirmations minus
-- unsubscribes and erasures since the first day shown (90 days back, see below); churn_rate is
-- that day's unsubscribes over the previous row's total.
-- Reads the last 90 days only, deduplicated: the events_recent view (sql/views/events_recent.sql,
-- README: What the warehouse queries scan), so BigQuery reads only those days' partitions.
WITH daily AS (
  SELECT
    DATE(occurred_at) AS day,
    COUNT(DISTINCT IF(event_type = 'signup', subscriber_id, NULL)) AS signups,
    COUNT(DISTINCT IF(event_type = 'confirm', subscriber_id, NULL)) AS confirmations,
    COUNT(DISTINCT IF(event_type = 'unsubscribe', subscriber_id, NULL)) AS unsubscribes,
    COUNT(DISTINCT IF(event_type = 'erased', subscriber_id, NULL)) AS erasures
  FROM events_recent
  WHERE event_type IN ('signup', 'confirm', 'unsubscribe', 'erased')
  GROUP BY 1
),
running AS (
  SELECT
    *,
    confirmations - unsubscribes - erasures AS net_change,
    SUM(confirmations - unsubscribes - erasures) OVER (
      ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS subscribers
  FROM daily
)
SELECT
  *,
  SAFE_DIVIDE(unsubscribes, LAG(subscribers) OVER (ORDER BY day)) AS churn_rate
FROM running
