# Every few minutes the dispatch function sweeps scheduled campaigns whose time has come: the
# job publishes {"kind": "sweep"} to the topic the dispatch function is pushed from.

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
