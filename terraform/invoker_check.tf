# public_access = "invoker_check_disabled": the way through an organisation policy of Domain
# Restricted Sharing (constraints/iam.allowedPolicyMemberDomains), which refuses every allUsers
# grant. Cloud Run can instead skip its invoker IAM check on a service, which Google recommends
# for exactly this case (Cloud Run docs: "Allowing public (unauthenticated) access"). The Cloud
# Functions resource has no argument for it (google_cloud_run_v2_service has
# `invoker_iam_disabled`, google_cloudfunctions2_function has not), so after every deploy of a
# public function this runs `gcloud run services update --no-invoker-iam-check` on the
# function's Cloud Run service, and only on the public ones: admin keeps its IAM check and the
# pushed functions keep theirs. The mode needs var.domain, so the public functions take traffic
# only from the load balancer (ingress ALLOW_INTERNAL_AND_GCLB) and its Cloud Armor policy, and
# gcloud (authenticated as the identity running Terraform, with run.services.update and
# run.services.setIamPolicy) where Terraform runs.

locals {
  invoker_check_disabled = var.public_access == "invoker_check_disabled" ? local.public_functions : toset([])
}

resource "terraform_data" "invoker_check_disabled" {
  for_each = local.invoker_check_disabled

  # Every deploy of the function (it rewrites its Cloud Run service) re-runs it.
  triggers_replace = [
    google_cloudfunctions2_function.function[each.key].service_config[0].service,
    google_cloudfunctions2_function.function[each.key].update_time,
  ]

  provisioner "local-exec" {
    command = "gcloud run services update ${google_cloudfunctions2_function.function[each.key].service_config[0].service} --no-invoker-iam-check --region=${var.region} --project=${var.project_id} --quiet"
  }

  lifecycle {
    precondition {
      condition     = var.domain != ""
      error_message = "public_access = \"invoker_check_disabled\" needs domain: the public functions must sit behind the load balancer."
    }
  }
}
