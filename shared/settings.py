"""Settings: the only module that reads the environment.

Every knob is an environment variable (in GCP set by Terraform; secrets come from Secret Manager
as environment variables). Defaults give a working local mode with no configuration at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from shared.domain.errors import ConfigurationError

Backend = Literal["local", "gcp"]
_DEV_SECRET = "local-development-secret-do-not-use-in-production"


@dataclass(frozen=True)
class Settings:
    backend: Backend = "local"
    data_dir: Path = Path("var")
    template_root: Path = Path("templates")
    host: str = "127.0.0.1"
    port: int = 8080
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)  # secret
    smtp_starttls: str = ""  # "1" to upgrade the connection with STARTTLS
    smtp_helo_name: str = ""  # the name we give in EHLO; empty: this host's FQDN
    public_url: str = ""  # base URL links in mail point at; derived from host/port locally
    sender: str = "Mailpipe <hello@mailpipe.local>"
    esp: str = "smtp"  # smtp | sendgrid | mailgun | ses | null
    # Secrets. Local defaults are refused when backend=gcp.
    # Signs tokens and links (confirm, unsubscribe, preferences, tracking).
    signing_key: str = field(default=_DEV_SECRET, repr=False)
    # Keyed hashes of addresses: subscriber ids, suppression entries that outlive erasure.
    hash_key: str = field(default=_DEV_SECRET, repr=False)
    admin_api_key: str = field(default="", repr=False)
    # Local bus.
    bus_min_backoff_s: float | None = None  # None: the topology's retry policy
    bus_max_backoff_s: float | None = None
    bus_max_attempts: int | None = None
    bus_poll_interval_s: float = 0.05
    # Signup abuse limits.
    signup_ip_limit_per_hour: int = 20
    signup_address_limit_per_hour: int = 3
    confirmation_ttl_hours: int = 48
    # Feedback policy: suppress after `threshold` soft bounces among the last `window` sends.
    soft_bounce_threshold: int = 3
    soft_bounce_window: int = 5
    soft_bounce_lookback_days: int = 90  # sends older than this do not count
    # Tracking: a click this soon after the send is a security scanner, not a person.
    machine_click_within_s: float = 10.0
    machine_ip_ranges: tuple[str, ...] = ()  # extra CIDRs of proxies/scanners, comma list
    # GCP.
    gcp_project: str = ""
    gcp_region: str = "europe-west1"
    firestore_database: str = "(default)"
    bigquery_dataset: str = "mailpipe"
    template_bucket: str = ""
    # GCP client endpoints: empty means Google's. A plain-http endpoint is a local emulator or
    # test server and gets anonymous credentials. The SDKs also honour *_EMULATOR_HOST.
    pubsub_transport: str = "grpc"  # grpc | rest (rest reaches an HTTP test server)
    pubsub_api_endpoint: str = ""
    bigquery_api_endpoint: str = ""
    storage_api_endpoint: str = ""
    gcp_retry_deadline_s: float = 60.0  # how long the SDKs retry 429/5xx before giving up
    # ESP credentials (Secret Manager in GCP).
    sendgrid_api_key: str = field(default="", repr=False)
    sendgrid_webhook_public_key: str = ""
    mailgun_api_key: str = field(default="", repr=False)
    mailgun_domain: str = ""
    mailgun_webhook_signing_key: str = field(default="", repr=False)
    ses_region: str = "eu-west-1"
    ses_topic_arns: tuple[str, ...] = ()
    ses_configuration_set: str = ""  # the SES configuration set that publishes events to SNS
    ses_access_key_id: str = ""  # empty: boto3's standard chain (AWS_ACCESS_KEY_ID, ...)
    ses_secret_access_key: str = field(default="", repr=False)  # secret
    esp_base_url: str = ""  # overrides the provider's API endpoint (tests, EU regions)
    esp_rate_per_s: float = 0.0  # token-bucket rate; 0 means the provider's default
    log_level: str = "INFO"
    # Local runner: extra processes that run the Pub/Sub-triggered functions, like more
    # function instances (the bus is shared SQLite). 1 keeps everything in one process.
    worker_processes: int = 1
    # Local runner: bus worker threads per process for the send function (network-bound). The
    # kill -9 bound grows with it: at most one chunk in flight per send worker is resent.
    send_workers: int = 1
    # Campaigns (issue 4).
    campaign_page_size: int = 500  # subscribers per audience page (one store query, checkpoint)
    campaign_batch_size: int = 250  # recipients per render batch (one rendered Pub/Sub message)
    campaign_pages_per_run: int = 50  # pages one dispatch invocation handles before handing over
    campaign_lease_s: float = 300.0  # a dispatch invocation's hold on a phase
    campaign_stall_s: float = 900.0  # the sweep restarts a phase idle this long without a lease
    campaign_gate_ttl_s: float = 3.0  # how long the send stage trusts a cached campaign status
    scheduler_interval_s: float = 60.0  # local scheduler: seconds between sweeps (GCP: 5 min)
    send_lease_s: float = 120.0  # the send ledger's hold on a batch while it is being sent
    # Behavioural triggers (issue 7).
    # Secret: POST /events needs it as a Bearer token; empty disables event intake.
    events_api_key: str = field(default="", repr=False)
    triggers_blob: str = "triggers/triggers.yaml"  # trigger definitions in the template store
    trigger_lease_s: float = 300.0  # a sweep's hold on a run it is sending (then another may)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def warehouse_dir(self) -> Path:
        """The local warehouse's parts (DuckDB reads them)."""
        return self.data_dir / "warehouse"

    @property
    def is_local(self) -> bool:
        return self.backend == "local"

    def validate(self) -> Settings:
        if self.backend not in ("local", "gcp"):
            raise ConfigurationError(f"MAILPIPE_BACKEND must be local or gcp, not {self.backend!r}")
        if self.backend == "gcp":
            missing = [n for n in ("gcp_project", "template_bucket") if not getattr(self, n)]
            if missing:
                names = ", ".join(f"MAILPIPE_{n.upper()}" for n in missing)
                raise ConfigurationError(f"backend gcp needs {names}")
            if _DEV_SECRET in (self.signing_key, self.hash_key):
                raise ConfigurationError(
                    "MAILPIPE_SIGNING_KEY and MAILPIPE_HASH_KEY must be set in production"
                )
        return self


def _convert(kind: object, raw: str, name: str) -> object:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float", "float | None"):
            return float(raw)
        if kind in ("int | None",):
            return int(raw)
        if kind in (Path, "Path"):
            return Path(raw)
        if kind in ("tuple[str, ...]",):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not a valid {kind}") from exc
    return raw


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from MAILPIPE_* variables (plus PORT and SMTP_PORT, as `make run` documents)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        if f.name == "extra":
            continue
        name = f"MAILPIPE_{f.name.upper()}"
        if name in env:
            values[f.name] = _convert(f.type, env[name], name)
    if "port" not in values and env.get("PORT"):
        values["port"] = _convert(int, env["PORT"], "PORT")
    if "smtp_port" not in values and env.get("SMTP_PORT"):
        values["smtp_port"] = _convert(int, env["SMTP_PORT"], "SMTP_PORT")
    extra = {
        k: v for k, v in env.items() if k.startswith("MAILPIPE_") or k.endswith("_EMULATOR_HOST")
    }
    return Settings(**values, extra=extra).validate()  # type: ignore[arg-type]


def to_environ(settings: Settings) -> dict[str, str]:
    """MAILPIPE_* variables that `load` turns back into these settings (child processes)."""
    env: dict[str, str] = dict(settings.extra)
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.name == "extra" or value is None:
            continue
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        env[f"MAILPIPE_{f.name.upper()}"] = text
    return env


def child_environ(settings: Settings) -> dict[str, str]:
    """This process's environment with `settings` written over it, for a child process."""
    return {**os.environ, **to_environ(settings)}
