# Optional: Cloud Armor in front of the signup function (needs var.domain; README: your own
# domain). Each client address may POST to /signup at most var.edge_signup_limit_per_minute
# times a minute, then gets 429 at the edge; the function's own per-address and per-IP limits
# (the signup_*_limit_per_hour settings) still apply behind it. GET (the form) is never limited.

locals {
  armor_enabled = local.lb_enabled && var.edge_signup_limit_per_minute > 0
}

resource "google_compute_security_policy" "signup" {
  count = local.armor_enabled ? 1 : 0

  name        = "mailpipe-signup"
  description = "Per-client rate limit on signup POSTs."

  rule {
    action      = "throttle"
    priority    = 1000
    description = "signup POSTs per client address"

    match {
      expr {
        expression = "request.method == 'POST'"
      }
    }

    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"

      rate_limit_threshold {
        count        = var.edge_signup_limit_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    # Log4j lookups in any header or the path (CVE-2021-44228): never legitimate here.
    action      = "deny(403)"
    priority    = 2000
    description = "CVE-2021-44228 (log4j)"

    match {
      expr {
        expression = "evaluatePreconfiguredWaf('cve-canary', {'sensitivity': 1})"
      }
    }
  }

  rule {
    action      = "allow"
    priority    = 2147483647
    description = "everything else"

    match {
      versioned_expr = "SRC_IPS_V1"

      config {
        src_ip_ranges = ["*"]
      }
    }
  }

  depends_on = [google_project_service.api]
}
