# Topics and subscriptions, all generated from var.topology (shared/topology.py).
#
# Pub/Sub-triggered functions are plain HTTP functions and these push subscriptions are ours:
# Eventarc's managed subscriptions cannot carry a dead-letter policy. Each subscription retries
# with exponential backoff, then forwards the message to its own dead-letter topic, where a pull
# subscription keeps it for 31 days (the most Pub/Sub allows) until an operator replays or drops
# it (README: dead letters); an alert fires on the first one (monitoring.tf).

resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; a customer-managed key adds a KMS key ring and per-message KMS calls that this pipeline does not need.
  for_each = toset(var.topology.topics)

  name = each.key

  depends_on = [google_project_service.api]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; see google_pubsub_topic.topic.
  for_each = var.topology.subscriptions

  name = each.value.dead_letter_topic

  # The topic keeps messages 31 days too (the most Pub/Sub allows), so an operator can seek the
  # hold subscription back to a wrongly acknowledged dead letter.
  message_retention_duration = "${var.topology.dead_letter_retention_s}s"

  depends_on = [google_project_service.api]
}

resource "google_pubsub_subscription" "push" {
  for_each = var.topology.subscriptions

  name                 = each.key
  topic                = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds = each.value.ack_deadline_s

  message_retention_duration = "604800s" # 7 days of backlog if a function is down

  expiration_policy {
    ttl = "" # never expire, however long a stage stays idle
  }

  retry_policy {
    minimum_backoff = "${each.value.minimum_backoff_s}s"
    maximum_backoff = "${each.value.maximum_backoff_s}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = each.value.max_attempts
  }

  push_config {
    # The run.app URL of the function's Cloud Run service. The path names the topic, so
    # functions-framework turns the push envelope into the same CloudEvent Eventarc delivers
    # (source //pubsub.googleapis.com/projects/P/topics/T).
    push_endpoint = "${google_cloudfunctions2_function.function[each.value.function].service_config[0].uri}/projects/${var.project_id}/topics/${each.value.topic}"

    oidc_token {
      service_account_email = google_service_account.pusher.email
      audience              = google_cloudfunctions2_function.function[each.value.function].service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.pusher_invoker,
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_service_account_iam_member.pubsub_agent_mints_pusher_tokens,
    time_sleep.iam_propagation,
  ]
}

resource "google_pubsub_subscription" "dead_letter_hold" {
  for_each = var.topology.subscriptions

  name                 = each.value.dead_letter_subscription
  topic                = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds = 600

  # 31 days (DEAD_LETTER_RETENTION_S in shared/topology.py, the most Pub/Sub allows): unacked
  # dead letters cost storage only, and `mailpipe dlq` warns a day before they expire.
  message_retention_duration = "${var.topology.dead_letter_retention_s}s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = "" # never expire: nothing dead-lettered may be lost
  }
}
