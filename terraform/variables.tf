# Inputs. Only project_id, esp, sender_domain and sender_address have no default.

variable "project_id" {
  description = "The Google Cloud project everything is created in."
  type        = string
}

variable "region" {
  description = "Region of the functions, buckets, scheduler job and (by default) Firestore and BigQuery."
  type        = string
  default     = "europe-west1"
}

variable "firestore_location" {
  description = "Firestore location (a region such as europe-west1, or a multi-region such as eur3); empty means var.region."
  type        = string
  default     = ""
}

variable "bigquery_location" {
  description = "BigQuery dataset location (a region, EU or US); empty means var.region."
  type        = string
  default     = ""
}

variable "bigquery_dataset" {
  description = "Dataset of the event warehouse and the dashboard views."
  type        = string
  default     = "mailpipe"
}

variable "esp" {
  description = "The email service provider the send function uses: smtp, sendgrid, mailgun or ses."
  type        = string

  validation {
    condition     = contains(["smtp", "sendgrid", "mailgun", "ses"], var.esp)
    error_message = "esp must be one of smtp, sendgrid, mailgun, ses."
  }
}

variable "sender_domain" {
  description = "The domain mail is sent from (SPF, DKIM and DMARC are set up for it at the ESP)."
  type        = string
}

variable "sender_address" {
  description = "The From address, e.g. news@example.com; it must be at sender_domain."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s<>]+@[^@\\s<>]+$", var.sender_address))
    error_message = "sender_address must be a bare address such as news@example.com."
  }
}

variable "sender_name" {
  description = "Display name in the From header; empty sends the bare address."
  type        = string
  default     = ""
}

variable "public_base_url" {
  description = "Base URL of a load balancer that serves the HTTP functions under their local path prefixes (/signup, /confirm, /preferences, /unsubscribe, /t, /webhooks). Empty: links point straight at each function's https://REGION-PROJECT.cloudfunctions.net/NAME URL."
  type        = string
  default     = ""

  validation {
    condition     = var.public_base_url == "" || can(regex("^https://", var.public_base_url))
    error_message = "public_base_url must start with https://."
  }
}

variable "dist_dir" {
  description = "Directory holding the zips `make package` builds, relative to this directory unless absolute."
  type        = string
  default     = "../dist"
}

variable "max_instances" {
  description = "Per-function override of the topology's maximum instance count, e.g. { send = 50 }."
  type        = map(number)
  default     = {}
}

variable "min_instances" {
  description = "Per-function minimum (warm) instance count, e.g. { tracking = 1 }; instances kept warm are billed while idle."
  type        = map(number)
  default     = {}
}

variable "log_level" {
  description = "MAILPIPE_LOG_LEVEL of every function."
  type        = string
  default     = "INFO"
}

variable "esp_rate_per_s" {
  description = "Messages per second the send function allows itself against the ESP; 0 means the provider's default."
  type        = number
  default     = 0
}

variable "campaign_send_rate_per_s" {
  description = "Recipients per second dispatch publishes a campaign at (MAILPIPE_CAMPAIGN_SEND_RATE_PER_S): your provider account's sustained send rate, so the backlog waits in the audience and not in Pub/Sub (README: Fan-out the platform can take); 0 is unpaced."
  type        = number
  default     = 1000

  validation {
    condition     = var.campaign_send_rate_per_s >= 0
    error_message = "campaign_send_rate_per_s must be 0 (unpaced) or more."
  }
}

variable "smtp_host" {
  description = "SMTP relay host when esp = smtp."
  type        = string
  default     = ""
}

variable "smtp_port" {
  description = "SMTP relay port when esp = smtp (Cloud Run blocks outbound port 25)."
  type        = number
  default     = 587
}

variable "smtp_username" {
  description = "SMTP relay user when esp = smtp (its password is the mailpipe-smtp-password secret)."
  type        = string
  default     = ""
}

variable "smtp_starttls" {
  description = "Upgrade the SMTP connection with STARTTLS when esp = smtp."
  type        = bool
  default     = true
}

variable "mailgun_domain" {
  description = "Mailgun sending domain when esp = mailgun; empty means sender_domain."
  type        = string
  default     = ""
}

variable "ses_region" {
  description = "AWS region of SES when esp = ses."
  type        = string
  default     = "eu-west-1"
}

variable "ses_access_key_id" {
  description = "AWS access key id of the IAM user that may call SES SendRawEmail when esp = ses; its secret key goes into the mailpipe-ses-secret-access-key secret."
  type        = string
  default     = ""
}

variable "ses_configuration_set" {
  description = "SES configuration set that publishes bounces, complaints and deliveries to SNS when esp = ses; empty sends without one."
  type        = string
  default     = ""
}

variable "ses_topic_arns" {
  description = "SNS topic ARNs whose SES notifications the webhooks function accepts when esp = ses."
  type        = list(string)
  default     = []
}

variable "dkim_selector" {
  description = "DKIM selector Mailpipe signs with (the key at <selector>._domainkey.<domain>); empty: no signing by Mailpipe. Its private key goes into the mailpipe-dkim-private-key secret (mailpipe dkim keygen)."
  type        = string
  default     = ""
}

variable "dkim_domain" {
  description = "DKIM signing domain (d=); empty means sender_domain."
  type        = string
  default     = ""
}

variable "daily_cap" {
  description = "Most campaign recipients dispatched per sending domain per UTC day once warmed up; 0: no cap."
  type        = number
  default     = 0
}

variable "warmup_volumes" {
  description = "Warm-up: recipients allowed on day 1, 2, ... from warmup_start (then daily_cap); empty: no warm-up."
  type        = list(number)
  default     = []
}

variable "warmup_start" {
  description = "First day (YYYY-MM-DD, UTC) of the warm-up schedule."
  type        = string
  default     = ""
}

variable "sweep_schedule" {
  description = "Cron schedule of the scheduled-campaign sweep published to the dispatch function's topic."
  type        = string
  default     = "*/5 * * * *"
}

variable "trigger_sweep_schedule" {
  description = "Cron schedule of the behavioural-trigger sweep published to the triggers function's topic; a delayed step is sent at most this late."
  type        = string
  default     = "* * * * *"
}

variable "admin_invokers" {
  description = "IAM members allowed to call the admin API (the non-public HTTP functions), e.g. [\"group:mail-ops@example.com\", \"user:ana@example.com\"]. Each also needs the admin API key."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.admin_invokers : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):", m))])
    error_message = "admin_invokers takes user:, group:, serviceAccount:, domain: or principal members; the admin API is never public."
  }
}

variable "max_time_travel_hours" {
  description = "How long BigQuery keeps changed and deleted rows of the dataset reachable by time travel (48 to 168, a multiple of 24). The GDPR knob: an erasure is complete in storage this long (plus BigQuery's 7-day fail-safe) after it ran."
  type        = number
  default     = 168

  validation {
    condition     = var.max_time_travel_hours >= 48 && var.max_time_travel_hours <= 168 && var.max_time_travel_hours % 24 == 0
    error_message = "max_time_travel_hours must be 48, 72, 96, 120, 144 or 168."
  }
}

variable "deletion_protection" {
  description = "Protect the Firestore database and the events table from `terraform destroy`."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Extra labels put on every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "topology" {
  description = "Functions, topics and subscriptions, generated from shared/topology.py into topology.auto.tfvars.json by `python -m shared.topology_export` (also run by `make package`). Never set it by hand."
  type = object({
    generated_by            = string
    topics                  = list(string)
    dead_letter_retention_s = number
    functions = map(object({
      entry_point   = string
      source_dir    = string
      trigger_topic = string # null for HTTP functions
      route         = string # the HTTP functions' path prefix (/t ...); null for pushed ones
      public        = bool
      memory_mb     = number
      timeout_s     = number
      max_instances = number
      concurrency   = number # requests an instance takes at once (max_instance_request_concurrency)
      cpu           = string # vCPUs per instance ("1"); null: the memory tier's default
    }))
    subscriptions = map(object({
      topic                    = string
      function                 = string
      ack_deadline_s           = number
      minimum_backoff_s        = number
      maximum_backoff_s        = number
      max_attempts             = number
      dead_letter_topic        = string
      dead_letter_subscription = string
    }))
  })

  validation {
    condition     = alltrue([for s in values(var.topology.subscriptions) : s.max_attempts >= 5 && s.max_attempts <= 100])
    error_message = "Pub/Sub dead-letter policies allow 5 to 100 delivery attempts."
  }

  validation {
    condition     = alltrue([for s in values(var.topology.subscriptions) : s.ack_deadline_s >= 10 && s.ack_deadline_s <= 600])
    error_message = "Pub/Sub ack deadlines must be 10 to 600 seconds."
  }

  validation {
    condition = alltrue([
      for s in values(var.topology.subscriptions) :
      s.minimum_backoff_s >= 0 && s.minimum_backoff_s <= s.maximum_backoff_s && s.maximum_backoff_s <= 600
    ])
    error_message = "Pub/Sub retry backoff must satisfy 0 <= minimum <= maximum <= 600 seconds."
  }
}

# --- your own domain (lb.tf, armor.tf) -----------------------------------------------------------

variable "domain" {
  description = "Your own domain for the public functions, e.g. mail.example.com: Terraform creates a global HTTPS load balancer with a Google-managed certificate for it (point its DNS A record at output lb_ip), links in mail use https://DOMAIN, and the public functions take traffic only from the balancer. Empty: no balancer; links point at each function's own URL."
  type        = string
  default     = ""

  validation {
    condition     = var.domain == "" || can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", var.domain))
    error_message = "domain must be a bare lowercase host name such as mail.example.com (no scheme, no path)."
  }
}

variable "public_access" {
  description = "How anonymous callers may reach the public functions: \"allUsers\" grants roles/run.invoker to allUsers on each; \"invoker_check_disabled\" grants nothing and turns off Cloud Run's invoker IAM check on those functions only (the way through an organisation's Domain Restricted Sharing policy, which refuses allUsers; needs domain and gcloud where Terraform runs). README: who may call the public functions."
  type        = string
  default     = "allUsers"

  validation {
    condition     = contains(["allUsers", "invoker_check_disabled"], var.public_access)
    error_message = "public_access must be allUsers or invoker_check_disabled."
  }
}

variable "trusted_proxy_hops" {
  description = "MAILPIPE_TRUSTED_PROXY_HOPS: X-Forwarded-For entries appended by Google, counted from the right. null: 2 behind a load balancer (domain or public_base_url set), else 1 (README: client addresses)."
  type        = number
  default     = null
}

variable "edge_signup_limit_per_minute" {
  description = "Cloud Armor: signup POSTs allowed per client address and minute at the load balancer (429 beyond); 0 creates no policy. Needs domain."
  type        = number
  default     = 0
}

# --- alerts and dashboard (monitoring.tf) ----------------------------------------------------

variable "notification_channels" {
  description = "Cloud Monitoring notification channels every alert goes to, as projects/PROJECT/notificationChannels/ID (create them in the console or with gcloud). Empty: alerts still open incidents in the console, nobody is notified."
  type        = list(string)
  default     = []
}

variable "backlog_age_alert_s" {
  description = "Alert when the oldest unacknowledged message of a work subscription is older than this many seconds."
  type        = number
  default     = 900
}

variable "error_rate_alert" {
  description = "Alert when more than this share of a function's requests answered 5xx over 5 minutes."
  type        = number
  default     = 0.05
}

variable "bounce_rate_alert" {
  description = "Alert when bounces exceed this share of sends over the last day (mailbox providers start refusing mail above about 2 %)."
  type        = number
  default     = 0.02
}

variable "complaint_rate_alert" {
  description = "Alert when spam complaints exceed this share of sends over the last day (Gmail and Yahoo require staying below 0.1 %, and never reaching 0.3 %)."
  type        = number
  default     = 0.001
}

variable "billing_account" {
  description = "Billing account id (XXXXXX-XXXXXX-XXXXXX) for a monthly budget on this project; empty creates no budget. The identity running Terraform needs roles/billing.costsManager on it."
  type        = string
  default     = ""
}

variable "monthly_budget" {
  description = "Budget amount per month in budget_currency; alerts at 50 %, 90 % and 100 % of it, and at 100 % of the forecast."
  type        = number
  default     = 100
}

variable "budget_currency" {
  description = "Currency of monthly_budget; must be the billing account's currency."
  type        = string
  default     = "USD"
}
