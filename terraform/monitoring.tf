# Alerts, a dashboard and an optional budget, as code (README: alerts).
#
# Every alert goes to var.notification_channels. One alert policy per subscription where the
# topology has one, so a new stage brings its own alerts:
#   dead letters     any message in a dead-letter hold subscription (nothing may sit there unseen;
#                    `mailpipe dlq list` shows them and warns a day before they expire)
#   backlog          the oldest unacknowledged message of a work subscription is older than
#                    var.backlog_age_alert_s (a stage is down, failing or too slow)
# and one each for:
#   5xx rate         a function answered more than var.error_rate_alert of its requests with 5xx
#                    over 5 minutes (per Cloud Run service)
#   bounce rate      bounces over var.bounce_rate_alert (2 %) of sends in the last day
#   complaint rate   complaints over var.complaint_rate_alert (0.1 %) of sends in the last day
# The two rates come from a log-based metric: the warehouse function logs, for every batch it
# stores, one line per event type with its count (shared/services/warehousing.py).

locals {
  # Only Mailpipe's Cloud Run services (one per function), not others in the same project.
  mailpipe_services = "resource.labels.service_name = one_of(${join(", ", [for f in google_cloudfunctions2_function.function : "\"${f.service_config[0].service}\""])})"

  alert_documentation = "Mailpipe runbook: README (alerts) and terraform/README.md (alerts)."

  # Cloud Monitoring's PromQL name of the log-based metric below (a distribution: `_sum` is the
  # event count). Log-based metrics may map to more than one monitored resource type, so every
  # selector names the one the warehouse function logs from.
  warehoused_events = "logging_googleapis_com:user_${google_logging_metric.warehoused_events.name}_sum"
  on_cloud_run      = "monitored_resource=\"cloud_run_revision\""
  sends_per_day     = "sum(increase(${local.warehoused_events}{${local.on_cloud_run},event_type=\"send\"}[1d]))"
  rate_alerts = {
    bounce    = { event_type = "bounce", threshold = var.bounce_rate_alert, title = "Bounce rate" }
    complaint = { event_type = "complaint", threshold = var.complaint_rate_alert, title = "Complaint rate" }
  }
  # Below this many sends a day, one bounce is no rate worth waking anyone for.
  rate_alert_min_sends = 200
}

resource "google_monitoring_alert_policy" "dead_letters" {
  for_each = var.topology.subscriptions

  display_name          = "Mailpipe: dead letters on ${each.value.dead_letter_subscription}"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "a message is waiting in ${each.value.dead_letter_subscription}"

    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${each.value.dead_letter_subscription}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "A message exhausted its ${each.value.max_attempts} delivery attempts on ${each.key} and waits in ${each.value.dead_letter_subscription}. Find the cause in the ${each.value.function} function's logs, then `mailpipe dlq list ${each.key}` and `mailpipe dlq replay ${each.key}` (or purge). ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "backlog" {
  for_each = var.topology.subscriptions

  display_name          = "Mailpipe: backlog on ${each.key}"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "oldest unacknowledged message on ${each.key} is older than ${var.backlog_age_alert_s} s"

    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${each.key}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.backlog_age_alert_s
      duration        = "300s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "Messages wait on ${each.key}: the ${each.value.function} function is failing (see its 5xx alert and logs), at its instance limit, or slower than what arrives. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "errors" {
  display_name          = "Mailpipe: 5xx rate of a function"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "more than ${var.error_rate_alert * 100} % of a function's requests answered 5xx"

    condition_threshold {
      filter             = "resource.type = \"cloud_run_revision\" AND ${local.mailpipe_services} AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\""
      denominator_filter = "resource.type = \"cloud_run_revision\" AND ${local.mailpipe_services} AND metric.type = \"run.googleapis.com/request_count\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.error_rate_alert
      duration           = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }

      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }

  documentation {
    content   = "A Mailpipe function answers 5xx: 503 is a dependency that keeps failing (the platform retries Pub/Sub pushes, then dead-letters), 500 a bug or a missing setting (the log line names the secret to fill). ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [google_project_service.api]
}

resource "google_logging_metric" "warehoused_events" {
  # One log line per stored batch and event type: {"logger": "mailpipe.warehouse",
  # "event_type": "bounce", "event_count": 3, ...}. The distribution's sum is the event count.
  name        = "mailpipe_warehoused_events"
  description = "Events the warehouse function stored, by event type (the sum is the count)."
  filter      = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${google_cloudfunctions2_function.function["warehouse"].service_config[0].service}\" AND jsonPayload.logger = \"mailpipe.warehouse\" AND jsonPayload.event_count > 0"

  value_extractor = "EXTRACT(jsonPayload.event_count)"
  label_extractors = {
    event_type = "EXTRACT(jsonPayload.event_type)"
  }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "Mailpipe warehoused events"

    labels {
      key         = "event_type"
      value_type  = "STRING"
      description = "send, delivered, bounce, complaint, open, click ..."
    }
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 16
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "feedback_rate" {
  for_each = local.rate_alerts

  display_name          = "Mailpipe: ${lower(each.value.title)} over ${each.value.threshold * 100} % of sends (last day)"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels

  conditions {
    display_name = "${each.value.title} of the last 24 hours"

    condition_prometheus_query_language {
      query               = "(sum(increase(${local.warehoused_events}{${local.on_cloud_run},event_type=\"${each.value.event_type}\"}[1d])) / ${local.sends_per_day} > ${each.value.threshold}) and on() (${local.sends_per_day} > ${local.rate_alert_min_sends})"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  documentation {
    content   = "Mailbox providers throttle or block senders above about 2 % bounces and 0.1 % spam complaints. Pause running campaigns, check the list's source and the bounce reasons (the deliverability dashboard views in BigQuery). ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "86400s"
  }
}

resource "google_billing_budget" "monthly" {
  count = var.billing_account != "" ? 1 : 0

  billing_account = var.billing_account
  display_name    = "Mailpipe ${var.project_id}"

  budget_filter {
    projects = ["projects/${data.google_project.this.number}"]
  }

  amount {
    specified_amount {
      currency_code = var.budget_currency
      units         = tostring(var.monthly_budget)
    }
  }

  threshold_rules {
    threshold_percent = 0.5
  }
  threshold_rules {
    threshold_percent = 0.9
  }
  threshold_rules {
    threshold_percent = 1.0
  }
  threshold_rules {
    threshold_percent = 1.0
    spend_basis       = "FORECASTED_SPEND"
  }

  all_updates_rule {
    monitoring_notification_channels = var.notification_channels
    disable_default_iam_recipients   = false
  }

  depends_on = [google_project_service.api]
}

# --- the dashboard: throughput per stage, backlog, errors, latency ---------------------------

locals {
  run_filter = "resource.type = \"cloud_run_revision\" AND ${local.mailpipe_services}"

  dashboard_charts = [
    {
      title  = "Requests per second, per function (stage)"
      filter = "${local.run_filter} AND metric.type = \"run.googleapis.com/request_count\""
      align  = "ALIGN_RATE", reduce = "REDUCE_SUM", by = ["resource.labels.service_name"]
    },
    {
      title  = "Unacknowledged messages, per subscription (backlog and dead letters)"
      filter = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      align  = "ALIGN_MAX", reduce = "REDUCE_SUM", by = ["resource.labels.subscription_id"]
    },
    {
      title  = "Oldest unacknowledged message age (s), per subscription"
      filter = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      align  = "ALIGN_MAX", reduce = "REDUCE_MAX", by = ["resource.labels.subscription_id"]
    },
    {
      title  = "5xx answers per second, per function"
      filter = "${local.run_filter} AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\""
      align  = "ALIGN_RATE", reduce = "REDUCE_SUM", by = ["resource.labels.service_name"]
    },
    {
      title  = "Latency p95 (ms), per function"
      filter = "${local.run_filter} AND metric.type = \"run.googleapis.com/request_latencies\""
      align  = "ALIGN_DELTA", reduce = "REDUCE_PERCENTILE_95", by = ["resource.labels.service_name"]
    },
  ]
}

resource "google_monitoring_dashboard" "mailpipe" {
  dashboard_json = jsonencode({
    displayName = "Mailpipe"
    mosaicLayout = {
      columns = 12
      tiles = concat([
        for index, chart in local.dashboard_charts : {
          xPos   = (index % 2) * 6
          yPos   = floor(index / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = chart.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = chart.filter
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = chart.align
                      crossSeriesReducer = chart.reduce
                      groupByFields      = chart.by
                    }
                  }
                }
              }]
            }
          }
        }
        ], [{
          # A distribution's sum is its events: PromQL reads it as <metric>_sum.
          xPos   = (length(local.dashboard_charts) % 2) * 6
          yPos   = floor(length(local.dashboard_charts) / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = "Events stored per minute, by type (send, delivered, bounce, complaint ...)"
            xyChart = {
              dataSets = [{
                plotType        = "LINE"
                timeSeriesQuery = { prometheusQuery = "sum by (event_type) (increase(${local.warehoused_events}{${local.on_cloud_run}}[1m]))" }
              }]
            }
          }
      }])
    }
  })

  depends_on = [google_project_service.api]
}
