# Optional: the public functions on your own domain, behind a global external Application Load
# Balancer (created only when var.domain is set; README: your own domain).
#
#   https://DOMAIN/<route>/...  ->  forwarding rule :443 -> HTTPS proxy (Google-managed
#   certificate, TLS >= 1.2) -> URL map -> one backend service per public function -> a
#   serverless NEG on the function's Cloud Run service
#   http://DOMAIN/...           ->  forwarding rule :80 -> a redirect to https
#
# The URL map routes each public function's route prefix (shared/topology.py `route`: /signup,
# /confirm, /preferences, /unsubscribe, /t, /webhooks, /events) and does not rewrite the path:
# every function answers the same with or without its prefix (shared/entrypoints/routes.py).
# The admin API is never on the balancer. Public functions then take traffic only from the
# balancer (ingress ALLOW_INTERNAL_AND_GCLB, functions.tf), so Cloud Armor cannot be bypassed
# and X-Forwarded-For always has the balancer's two entries (MAILPIPE_TRUSTED_PROXY_HOPS=2).

locals {
  lb_enabled  = var.domain != ""
  lb_backends = local.lb_enabled ? local.public_functions : toset([])
  # prefix -> function, e.g. "/t" -> "tracking"
  lb_routes = { for name in local.lb_backends : var.topology.functions[name].route => name }
}

resource "google_compute_global_address" "lb" {
  count = local.lb_enabled ? 1 : 0

  name       = "mailpipe-lb"
  ip_version = "IPV4"

  depends_on = [google_project_service.api]
}

resource "google_compute_managed_ssl_certificate" "lb" {
  count = local.lb_enabled ? 1 : 0

  # The certificate is issued once DNS for the domain points at the address (output lb_ip);
  # until then HTTPS fails with a certificate error (README: your own domain).
  name = "mailpipe-lb-cert"

  managed {
    domains = [var.domain]
  }

  depends_on = [google_project_service.api]
}

resource "google_compute_region_network_endpoint_group" "function" {
  for_each = local.lb_backends

  name                  = "mailpipe-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = google_cloudfunctions2_function.function[each.key].service_config[0].service
  }
}

resource "google_compute_backend_service" "function" {
  for_each = local.lb_backends

  name                  = "mailpipe-${each.key}"
  description           = "Mailpipe ${each.key} function (serverless NEG)"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  # The provider's default, as in Google's serverless NEG setup (backend-services create with no
  # --protocol): the hop to Cloud Run stays within Google's network.
  protocol = "HTTP"
  # Cloud Armor on the signup backend only: the forms' abuse limit at the edge (armor.tf).
  security_policy = each.key == "signup" && local.armor_enabled ? google_compute_security_policy.signup[0].id : null

  backend {
    group = google_compute_region_network_endpoint_group.function[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "lb" {
  count = local.lb_enabled ? 1 : 0

  name        = "mailpipe-lb"
  description = "Mailpipe's public routes; anything else is answered by the signup form's function."
  # Unknown paths (/, /favicon.ico ...) go to signup, which shows its form or a JSON 4xx.
  default_service = google_compute_backend_service.function["signup"].id

  host_rule {
    hosts        = [var.domain]
    path_matcher = "mailpipe"
  }

  path_matcher {
    name            = "mailpipe"
    default_service = google_compute_backend_service.function["signup"].id

    dynamic "path_rule" {
      for_each = local.lb_routes

      content {
        # "/t" and everything below it; the path reaches the function as it is.
        paths   = [path_rule.key, "${path_rule.key}/*"]
        service = google_compute_backend_service.function[path_rule.value].id
      }
    }
  }
}

resource "google_compute_ssl_policy" "lb" {
  count = local.lb_enabled ? 1 : 0

  name            = "mailpipe-lb"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"

  depends_on = [google_project_service.api]
}

resource "google_compute_target_https_proxy" "lb" {
  count = local.lb_enabled ? 1 : 0

  name             = "mailpipe-lb"
  url_map          = google_compute_url_map.lb[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.lb[0].id]
  ssl_policy       = google_compute_ssl_policy.lb[0].id
}

resource "google_compute_global_forwarding_rule" "https" {
  count = local.lb_enabled ? 1 : 0

  name                  = "mailpipe-lb-https"
  target                = google_compute_target_https_proxy.lb[0].id
  ip_address            = google_compute_global_address.lb[0].id
  ip_protocol           = "TCP"
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}

# Plain http only redirects to https (links in mail are always https).
resource "google_compute_url_map" "http_redirect" {
  count = local.lb_enabled ? 1 : 0

  name        = "mailpipe-lb-http-redirect"
  description = "Redirects http to https."

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }

  depends_on = [google_project_service.api]
}

resource "google_compute_target_http_proxy" "http_redirect" {
  count = local.lb_enabled ? 1 : 0

  name    = "mailpipe-lb-http-redirect"
  url_map = google_compute_url_map.http_redirect[0].id
}

resource "google_compute_global_forwarding_rule" "http_redirect" {
  count = local.lb_enabled ? 1 : 0

  name                  = "mailpipe-lb-http"
  target                = google_compute_target_http_proxy.http_redirect[0].id
  ip_address            = google_compute_global_address.lb[0].id
  ip_protocol           = "TCP"
  port_range            = "80"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}
