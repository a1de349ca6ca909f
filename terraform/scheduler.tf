# Two sweeps, each a Cloud Scheduler job publishing {"kind": "sweep"} to the topic its function
# is pushed from (the same message the local runner's scheduler threads publish):
#   campaign sweep -> dispatch: start scheduled campaigns that are due, decide A/B tests,
#                     restart stalled dispatches
#   trigger sweep  -> triggers: send the trigger runs whose delay is over, take over runs whose
#                     sweep died; a sweep that finds more than it may handle hands the rest to a
#                     fresh invocation itself
# Cloud Scheduler publishes with its own service agent, which may publish to any topic of the
# project; no grant is needed.

resource "google_cloud_scheduler_job" "campaign_sweep" {
  name        = "mailpipe-campaign-sweep"
  description = "Start scheduled campaigns that are due."
  region      = var.region
  schedule    = var.sweep_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.topic[var.topology.functions["dispatch"].trigger_topic].id
    data       = base64encode(jsonencode({ kind = "sweep" }))
  }

  depends_on = [google_project_service.api]
}

resource "google_cloud_scheduler_job" "trigger_sweep" {
  name        = "mailpipe-trigger-sweep"
  description = "Send the behavioural trigger runs that are due."
  region      = var.region
  schedule    = var.trigger_sweep_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.topic[var.topology.functions["triggers"].trigger_topic].id
    data       = base64encode(jsonencode({ kind = "sweep" }))
  }

  depends_on = [google_project_service.api]
}
