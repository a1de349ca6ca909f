"""Analytics over the event warehouse: dashboard SQL (written once, in BigQuery's dialect),
the typed dashboard figures built on it, and the statistics the A/B comparison needs."""
