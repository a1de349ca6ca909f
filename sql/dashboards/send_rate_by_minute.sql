-- Sending activity per minute (UTC): messages handed to the provider, failed, and suppressed
-- at send time. The caller keeps the recent minutes (WHERE minute >= @since).
SELECT
  TIMESTAMP_TRUNC(occurred_at, MINUTE) AS minute,
  COUNTIF(event_type = 'send') AS sent,
  COUNTIF(event_type = 'send_failed') AS failed,
  COUNTIF(event_type = 'suppressed') AS suppressed
FROM events
WHERE event_type IN ('send', 'send_failed', 'suppressed')
GROUP BY 1
