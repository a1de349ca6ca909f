"""Settings: the only module that reads the environment.

Every knob is an environment variable (in GCP set by Terraform; secrets come from Secret Manager
as environment variables). Defaults give a working local mode with no configuration at all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from email.utils import parseaddr
from pathlib import Path
from typing import Literal

from shared.domain import mailing_lists
from shared.domain.errors import ConfigurationError

Backend = Literal["local", "gcp"]
_DEV_SECRET = "local-development-secret-do-not-use-in-production"
SINK_HOST = "127.0.0.1"  # where the local runner's SMTP sink listens
# The first version Terraform gives every Secret Manager secret (terraform/secrets.tf), so an
# apply never waits for values: it means "no value yet", and the setting keeps its default.
UNSET_SECRET = "unset: add a version to this secret"
log = logging.getLogger("mailpipe.settings")
# A paced dispatch invocation's longest run: well within the function's 540 s timeout and the
# 300 s campaign lease (renewed at every page).
PACED_RUN_MAX_S = 400


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
    # Local runner's SMTP sink: on, off, or auto (on when mail goes to the sink's address,
    # 127.0.0.1; off when MAILPIPE_SMTP_HOST names another server, so a real one is used).
    smtp_sink: str = "auto"
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
    # The console (/dashboard): a key that signs in read-only (the dashboards, no actions), and
    # in GCP Identity-Aware Proxy: the audience of its signed header, the addresses that act as
    # admins (everyone else IAP lets in reads), and where IAP's public keys are fetched.
    console_viewer_key: str = field(default="", repr=False)
    console_iap_audience: str = ""
    console_admins: tuple[str, ...] = ()
    console_iap_certs_url: str = "https://www.gstatic.com/iap/verify/public_key"
    # Local bus.
    bus_min_backoff_s: float | None = None  # None: the topology's retry policy
    bus_max_backoff_s: float | None = None
    bus_max_attempts: int | None = None
    bus_poll_interval_s: float = 0.05
    # Each function's capacity on the local bus: the topology's instances x concurrency times
    # this factor (1: production's; 0: no limit). A due delivery beyond it is refused as Cloud
    # Run's 429 is: a failed attempt, backed off, dead-lettered at the last (sqlite_bus.py).
    bus_capacity_scale: float = 1.0
    # Signup abuse limits.
    signup_ip_limit_per_hour: int = 20
    signup_address_limit_per_hour: int = 3
    confirmation_ttl_hours: int = 48
    # The list catalogue, `name=Display name` entries, and what a signup naming no list joins.
    lists: tuple[str, ...] = mailing_lists.DEFAULT_LISTS
    signup_default_lists: tuple[str, ...] = mailing_lists.DEFAULT_SIGNUP_LISTS
    # Feedback policy: suppress after `threshold` soft bounces among the last `window` sends.
    soft_bounce_threshold: int = 3
    soft_bounce_window_days: float = 30.0  # soft bounces older than this do not count
    # Tracking: a click this soon after the send is a security scanner, not a person.
    machine_click_within_s: float = 10.0
    machine_ip_ranges: tuple[str, ...] = ()  # extra CIDRs of proxies/scanners, comma list
    # X-Forwarded-For entries appended by proxies we trust, counted from the right: 1 when
    # callers reach the function's own URL, 2 behind the HTTPS load balancer (Terraform sets
    # it); 0 ignores the header (shared/entrypoints/http.py client_ip).
    trusted_proxy_hops: int = 1
    # GCP.
    gcp_project: str = ""
    gcp_region: str = "europe-west1"
    firestore_database: str = "(default)"
    bigquery_dataset: str = "mailpipe"
    template_bucket: str = ""
    import_bucket: str = ""  # import files and their rejects (GCP); locally DATA_DIR/blobs
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
    # Deliverability (issue 18). DKIM: the key signs SMTP/SES mail and Mailgun's raw MIME.
    dkim_private_key: str = field(default="", repr=False)  # secret: PEM (RSA-2048+ or Ed25519)
    dkim_selector: str = ""  # the key is published at <selector>._domainkey.<domain>
    dkim_domain: str = ""  # the d= of the signature; empty: MAILPIPE_SENDER's domain
    spf_include: str = ""  # the SPF include the ESP needs; empty: the provider's own
    # Daily caps per sending domain: MAILPIPE_WARMUP_VOLUMES (day 1, day 2, ...) or a start
    # volume growing by a factor per day, from MAILPIPE_WARMUP_START (YYYY-MM-DD, UTC days),
    # never above MAILPIPE_DAILY_CAP (0: no cap once warmed up).
    daily_cap: int = 0
    warmup_volumes: tuple[str, ...] = ()
    warmup_start_volume: int = 0
    warmup_growth: float = 1.5
    warmup_start: str = ""
    log_level: str = "INFO"
    # Local runner: extra processes that run the Pub/Sub-triggered functions, like more
    # function instances (the bus is shared SQLite). 1 keeps everything in one process.
    worker_processes: int = 1
    # Local runner: bus worker threads per process for the send function (network-bound). The
    # kill -9 bound grows with it: at most one chunk in flight per send worker is resent.
    send_workers: int = 1
    # Campaigns (issue 4).
    campaign_page_size: int = 500  # subscribers per audience page (one store query, checkpoint)
    # Where campaigns started from now on take their audience: "snapshot" (SQL over the
    # warehouse's subscriber mirror, written to the blob store) or "documents" (page through
    # every subscriber document; for a deployment whose mirror is not built yet).
    audience_source: str = "snapshot"
    # How long a send instance keeps its answer to "who left a campaign's audience since the
    # snapshot" (one warehouse query; 0: a query per batch).
    audience_recheck_ttl_s: float = 30.0
    # How long a campaign waits for the subscriber mirror to hold everyone confirmed by its
    # audience time (rows of an import still on their way to the warehouse) before it stops
    # with an error that says how to repair the mirror.
    audience_mirror_wait_s: float = 900.0
    # One dispatch invocation's share of taking a large audience snapshot before it hands over
    # (well inside the dispatch lease and the function's timeout).
    audience_snapshot_piece_s: float = 120.0
    campaign_batch_size: int = 250  # recipients per render batch (one rendered Pub/Sub message)
    # Messages the send stage hands the provider between two send-ledger checkpoints (one
    # Firestore read and write each): what a crash mid-batch may send again (same Message-IDs).
    send_checkpoint_every: int = 125
    campaign_pages_per_run: int = 50  # pages one dispatch invocation handles before handing over
    # Dispatch publishes at most this many recipients per second (0: unpaced), so a campaign's
    # backlog waits in its audience, not in Pub/Sub (services/pacing.py); GCP: the provider's rate.
    campaign_send_rate_per_s: float = 0.0
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
    # Subscriber imports (issue 13): rows per chunk, one bus message and one invocation each.
    import_chunk_rows: int = 5000
    import_parallel_chunks: int = 2  # chunks of one import in flight at once
    extra: Mapping[str, str] = field(default_factory=dict)

    def _check_sending(self) -> None:
        if self.send_checkpoint_every < 1:
            raise ConfigurationError("MAILPIPE_SEND_CHECKPOINT_EVERY must be 1 or more")

    def _check_snapshot(self) -> None:
        # A snapshot piece writes no page, so nothing renews the dispatch lease meanwhile.
        longest = self.campaign_lease_s / 2
        if not 0 <= self.audience_snapshot_piece_s <= longest:
            raise ConfigurationError(
                f"MAILPIPE_AUDIENCE_SNAPSHOT_PIECE_S must be 0 to {longest:g} (half of "
                f"MAILPIPE_CAMPAIGN_LEASE_S), not {self.audience_snapshot_piece_s:g}"
            )

    def _check_pacing(self) -> None:
        """A paced dispatch invocation must finish its pages well within its timeout."""
        rate = self.campaign_send_rate_per_s
        if rate < 0:
            raise ConfigurationError("MAILPIPE_CAMPAIGN_SEND_RATE_PER_S must be 0 or more")
        run_s = self.campaign_pages_per_run * self.campaign_page_size / rate if rate else 0
        if run_s > PACED_RUN_MAX_S:
            raise ConfigurationError(
                f"at MAILPIPE_CAMPAIGN_SEND_RATE_PER_S={rate:g} a dispatch invocation of "
                f"MAILPIPE_CAMPAIGN_PAGES_PER_RUN={self.campaign_pages_per_run} pages takes "
                f"{run_s:.0f} s, more than {PACED_RUN_MAX_S} s: lower the pages per run"
            )

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def runs_smtp_sink(self) -> bool:
        """Whether the local runner starts its SMTP sink on smtp_host:smtp_port."""
        if self.smtp_sink == "auto":
            return self.smtp_host == SINK_HOST
        return self.smtp_sink == "on"

    @property
    def sender_domain(self) -> str:
        return parseaddr(self.sender)[1].rpartition("@")[2].lower()

    @property
    def signing_domain(self) -> str:
        """The DKIM d= domain: MAILPIPE_DKIM_DOMAIN, else the sender's."""
        return (self.dkim_domain or self.sender_domain).lower()

    @property
    def warehouse_dir(self) -> Path:
        """The local warehouse's parts (DuckDB reads them)."""
        return self.data_dir / "warehouse"

    @property
    def is_local(self) -> bool:
        return self.backend == "local"

    @property
    def list_catalog(self) -> mailing_lists.ListCatalog:
        return mailing_lists.ListCatalog.parse(self.lists, self.signup_default_lists)

    def validate(self) -> Settings:
        self.list_catalog  # noqa: B018 (raises ConfigurationError for a bad catalogue)
        if self.backend not in ("local", "gcp"):
            raise ConfigurationError(f"MAILPIPE_BACKEND must be local or gcp, not {self.backend!r}")
        if self.smtp_sink not in ("on", "off", "auto"):
            raise ConfigurationError(
                f"MAILPIPE_SMTP_SINK must be on, off or auto, not {self.smtp_sink!r}"
            )
        self._check_pacing()
        if self.bus_capacity_scale < 0:
            raise ConfigurationError("MAILPIPE_BUS_CAPACITY_SCALE must be 0 (no limit) or more")
        if self.trusted_proxy_hops < 0:
            raise ConfigurationError("MAILPIPE_TRUSTED_PROXY_HOPS must be 0 or more")
        self._check_sending()
        self._check_snapshot()
        if self.backend == "gcp":
            missing = [n for n in ("gcp_project", "template_bucket") if not getattr(self, n)]
            if missing:
                names = ", ".join(f"MAILPIPE_{n.upper()}" for n in missing)
                raise ConfigurationError(f"backend gcp needs {names}")
            unset = [n for n in ("signing_key", "hash_key") if getattr(self, n) == _DEV_SECRET]
            if unset:
                names = " and ".join(f"MAILPIPE_{n.upper()}" for n in unset)
                secrets = " and ".join(secret_name(n) for n in unset)
                raise ConfigurationError(
                    f"{names} must be set in production: add a version to the Secret Manager "
                    f"secret {secrets} (terraform/README.md: secrets)"
                )
        return self


def secret_name(setting: str) -> str:
    """The Secret Manager secret Terraform creates for a secret setting (terraform/secrets.tf)."""
    return "mailpipe-" + setting.replace("_", "-")


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
        if env.get(name) == UNSET_SECRET:
            log.warning("%s has no value yet: add a version to the Secret Manager secret %s;"
                        " until then it keeps its default", name, secret_name(f.name))  # fmt: skip
        elif name in env:
            values[f.name] = _convert(f.type, env[name], name)
    for name, default in _project_defaults().items():
        values.setdefault(name, default)
    if "port" not in values and env.get("PORT"):
        values["port"] = _convert(int, env["PORT"], "PORT")
    if "smtp_port" not in values and env.get("SMTP_PORT"):
        values["smtp_port"] = _convert(int, env["SMTP_PORT"], "SMTP_PORT")
    extra = {
        k: v for k, v in env.items() if k.startswith("MAILPIPE_") or k.endswith("_EMULATOR_HOST")
    }
    return Settings(**values, extra=extra).validate()  # type: ignore[arg-type]


def project_root() -> Path | None:
    """The source checkout this code runs from (it has pyproject.toml), or None (a package)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def _project_defaults() -> dict[str, Path]:
    """In a checkout, the data directory and templates are the checkout's, wherever the command
    runs: `make run` and `.venv/bin/mailpipe` started in another directory use the same `var`."""
    root = project_root()
    if root is None:
        return {}
    return {"data_dir": root / "var", "template_root": root / "templates"}


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
