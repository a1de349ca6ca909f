-- Subscriber growth and churn: one row per day (UTC) on which anyone signed up, confirmed,
-- unsubscribed or was erased. `subscribers` is the running total of confirmations minus
-- unsubscribes and erasures since the first day shown (90 days back, see below); churn_rate is
-- that day's unsubscribes over the previous row's total.
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
    COUNT(DISTINCT IF(event_type = 'signup', subscriber_id, NULL)) AS signups,
    COUNT(DISTINCT IF(event_type = 'confirm', subscriber_id, NULL)) AS confirmations,
    COUNT(DISTINCT IF(event_type = 'unsubscribe', subscriber_id, NULL)) AS unsubscribes,
    COUNT(DISTINCT IF(event_type = 'erased', subscriber_id, NULL)) AS erasures
  FROM recent_events
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
