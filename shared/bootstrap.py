"""The only place that knows both modes: Settings -> adapters -> services.

Nothing is built at import time. `container()` builds one Container per process on first use
(a warm Cloud Functions instance reuses it) and each adapter or service only when first asked
for, so a function builds just what it uses.
"""

from __future__ import annotations

import atexit
import threading
import time
from functools import cached_property
from typing import Any

from shared import settings as settings_module
from shared import topology
from shared.domain.errors import ConfigurationError
from shared.domain.events import utc_iso
from shared.domain.links import Links, local_base_urls
from shared.domain.mailing_lists import ListCatalog
from shared.domain.subscriber_mirror import change_event_rows
from shared.metering import NULL_METER, OperationMeter
from shared.ports import BlobStore, DeadLetters, DocumentStore, Mailer, Publisher, Warehouse
from shared.repositories.rate_limits import RateLimits
from shared.repositories.send_ledger import SendLedger
from shared.repositories.subscribers import Subscribers
from shared.repositories.suppressions import Suppressions
from shared.repositories.tokens import SingleUseTokens
from shared.services.confirmation import ConfirmationService
from shared.services.dispatch import DispatchService
from shared.services.feedback import FeedbackService
from shared.services.preference_sync import PreferenceSyncService
from shared.services.preferences import PreferenceService
from shared.services.publishing import Outbox
from shared.services.rendering import Renderer, RenderService
from shared.services.sending import SendService
from shared.services.signup import SignupService
from shared.services.templating import TemplateCatalog
from shared.services.tracking import TrackingService
from shared.services.unsubscribe import UnsubscribeService
from shared.services.warehousing import WarehouseService
from shared.services.webhooks import WebhookService
from shared.settings import Settings


class Container:
    """Adapters and services for one process, built lazily from settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        meter: OperationMeter = NULL_METER,
        clock: Any = time.time,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.meter = meter
        self.clock = clock
        for name, value in (overrides or {}).items():
            self.__dict__[name] = value  # pre-fills a cached_property (tests, the runner)

    # --- adapters -------------------------------------------------------------------------
    @cached_property
    def documents(self) -> DocumentStore:
        if self.settings.is_local:
            from shared.adapters.local.sqlite_documents import SqliteDocuments

            return SqliteDocuments(self.settings.data_dir / "documents.sqlite3", self.meter)
        from shared.adapters.gcp.firestore_documents import FirestoreDocuments

        return FirestoreDocuments.from_settings(self.settings, self.meter)

    @cached_property
    def publisher(self) -> Publisher:
        if self.settings.is_local:
            return self.bus
        from shared.adapters.gcp.pubsub_publisher import PubSubPublisher

        return PubSubPublisher.from_settings(self.settings, self.meter)

    @cached_property
    def bus(self) -> Any:
        """The local durable bus (local mode only): publisher, worker source and dead letters."""
        from shared.adapters.local.sqlite_bus import SqliteBus, scaled_capacities

        s = self.settings
        override = None
        if s.bus_min_backoff_s is not None or s.bus_max_backoff_s is not None or s.bus_max_attempts:
            default = topology.RetryPolicy()
            minimum, maximum = s.bus_min_backoff_s, s.bus_max_backoff_s
            override = topology.RetryPolicy(
                default.minimum_backoff_s if minimum is None else minimum,
                default.maximum_backoff_s if maximum is None else maximum,
                s.bus_max_attempts or 0,  # 0: each subscription keeps its own
            )
        return SqliteBus(
            s.data_dir / "bus.sqlite3",
            retry_override=override,
            meter=self.meter,
            capacities=scaled_capacities(s.bus_capacity_scale),
        )

    @cached_property
    def dead_letters(self) -> DeadLetters:
        """Dead letters per subscription: the local bus, or Pub/Sub's dead-letter topics."""
        if self.settings.is_local:
            return self.bus
        from shared.adapters.gcp.pubsub_dead_letters import PubSubDeadLetters

        return PubSubDeadLetters.from_settings(self.settings, self.meter)

    @cached_property
    def blobs(self) -> BlobStore:
        if self.settings.is_local:
            from shared.adapters.local.filesystem_blobs import FilesystemBlobs

            return FilesystemBlobs(self.settings.template_root)
        from shared.adapters.gcp.gcs_blobs import GcsBlobs

        return GcsBlobs.from_settings(self.settings)

    @cached_property
    def pipeline_warehouse(self) -> Warehouse:
        """The warehouse for the pipeline's own queries; locally without the dashboards'
        in-memory snapshot, so a function's memory does not grow with the events stored, and
        answered by the runner's query service when it runs (see warehouse_service.py)."""
        if self.settings.is_local:
            from shared.adapters.local.duckdb_warehouse import DuckDbWarehouse

            folder = self.settings.warehouse_dir
            return DuckDbWarehouse(folder, self.meter, snapshot_reads=False, via_service=True)
        return self.warehouse

    @cached_property
    def warehouse(self) -> Warehouse:
        if self.settings.is_local:
            from shared.adapters.local.duckdb_warehouse import DuckDbWarehouse

            return DuckDbWarehouse(self.settings.warehouse_dir, self.meter)
        from shared.adapters.gcp.bigquery_warehouse import BigQueryWarehouse

        return BigQueryWarehouse.from_settings(self.settings, self.meter)

    @cached_property
    def mailer(self) -> Mailer:
        from shared.adapters.esp.providers import mailer_from_settings

        mailer = mailer_from_settings(self.settings)
        close = getattr(mailer, "close", None)
        if close is not None:  # an instance the platform shuts down normally says QUIT too
            atexit.register(close)
        return mailer

    def close(self) -> None:
        """End what holds a connection open to someone else: the mailer's (SMTP: QUIT on
        every pooled connection). Safe to call more than once, or when nothing was built."""
        mailer = self.__dict__.get("mailer")
        close = getattr(mailer, "close", None)
        if close is not None:
            close()

    # --- building blocks ---------------------------------------------------------------
    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.publisher)

    @cached_property
    def links(self) -> Links:
        urls = local_base_urls(self.settings.base_url)
        for route in urls:
            override = self.settings.extra.get(f"MAILPIPE_URL_{route.upper()}")
            if override:
                urls[route] = override
        return Links(self.settings.signing_key, urls)

    @cached_property
    def templates(self) -> TemplateCatalog:
        return TemplateCatalog(self.blobs, check_interval_s=2.0 if self.settings.is_local else 60)

    @cached_property
    def subscribers(self) -> Subscribers:
        outbox = self.outbox

        def mirror(rows: list[dict[str, Any]]) -> None:
            outbox.analytics_rows(change_event_rows(rows, utc_iso()))

        return Subscribers(self.documents, self.settings.hash_key, mirror, self.clock)

    @cached_property
    def suppressions(self) -> Suppressions:
        return Suppressions(self.documents, self.settings.hash_key)

    @cached_property
    def tokens(self) -> SingleUseTokens:
        return SingleUseTokens(self.documents)

    @cached_property
    def ledger(self) -> SendLedger:
        return SendLedger(self.documents, lease_s=self.settings.send_lease_s)

    @cached_property
    def list_catalog(self) -> ListCatalog:
        """The mailing lists, their display names and the signup defaults (settings)."""
        return self.settings.list_catalog

    # --- services ----------------------------------------------------------------------
    @cached_property
    def signup(self) -> SignupService:
        s = self.settings
        return SignupService(
            self.subscribers,
            RateLimits(self.documents),
            self.outbox,
            self.clock,
            s.signup_ip_limit_per_hour,
            s.signup_address_limit_per_hour,
            self.list_catalog,
        )

    @cached_property
    def confirmation(self) -> ConfirmationService:
        return ConfirmationService(
            self.subscribers, self.suppressions, self.tokens, self.outbox, self.clock
        )

    @cached_property
    def unsubscribe(self) -> UnsubscribeService:
        return UnsubscribeService(self.subscribers, self.suppressions, self.outbox,
                                  self.settings.signing_key, self.clock)  # fmt: skip

    @cached_property
    def preferences(self) -> PreferenceService:
        return PreferenceService(self.subscribers, self.unsubscribe, self.outbox,
                                 self.settings.signing_key, self.clock,
                                 self.list_catalog)  # fmt: skip

    @cached_property
    def preference_sync(self) -> PreferenceSyncService:
        ttl = self.settings.confirmation_ttl_hours * 3600
        return PreferenceSyncService(self.subscribers, self.tokens, self.outbox, self.links,
                                     self.settings.signing_key, ttl, self.clock)  # fmt: skip

    @cached_property
    def renderer(self) -> Renderer:
        domain = self.settings.sender.rpartition("@")[2].rstrip(">").strip() or "mailpipe.local"
        return Renderer(self.links, self.settings.sender, domain)

    @cached_property
    def render(self) -> RenderService:
        return RenderService(
            self.templates, self.renderer, self.outbox, topology.SEND_REQUESTS, self.clock
        )

    @cached_property
    def send(self) -> SendService:
        recheck = None
        if self.audience_snapshots is not None:
            from shared.repositories.audience_rechecks import AudienceRechecks
            from shared.services.audience_recheck import AudienceRecheck

            recheck = AudienceRecheck(self.pipeline_warehouse, self.sql_dialect,
                                      self.campaigns.get, self.clock,
                                      self.settings.audience_recheck_ttl_s,
                                      AudienceRechecks(self.documents))  # fmt: skip
        return SendService(self.ledger, self.suppressions, self.mailer, self.outbox, self.clock,
                           self.settings.send_checkpoint_every,
                           campaign_gate=self.campaign_gate, recheck=recheck)  # fmt: skip

    @cached_property
    def feedback(self) -> FeedbackService:
        from shared.domain.feedback import SoftBouncePolicy

        s = self.settings
        policy = SoftBouncePolicy(s.soft_bounce_threshold, s.soft_bounce_window_days)
        return FeedbackService(self.subscribers, self.suppressions, self.unsubscribe, self.outbox,
                               self.clock, policy, self.machines)  # fmt: skip

    @cached_property
    def machines(self) -> Any:
        """Human-or-machine classifier for opens and clicks (one per process: it keeps a window)."""
        from shared.domain.machine_detection import MachineDetector

        s = self.settings
        return MachineDetector(s.machine_click_within_s, s.machine_ip_ranges)

    @cached_property
    def gdpr(self) -> Any:
        """Export and erasure of one person's data across every store."""
        from shared.services.gdpr import GdprService

        mail = None
        if self.settings.is_local:
            from shared.adapters.local.maildir_mail import MaildirMail

            mail = MaildirMail(self.settings.data_dir / "mail")
        return GdprService(self.documents, self.subscribers, self.suppressions, self.warehouse,
                           self.outbox, self.sql_dialect, self.clock, mail,
                           (self.trigger_runs, self.trigger_activity),
                           self.remainder_stash, self._snapshot_store())  # fmt: skip

    def _snapshot_store(self) -> Any:
        """The audience snapshots' blob store, for GDPR erasure (None when snapshots are off)."""
        from shared.repositories.audience_snapshots import AudienceSnapshots

        if self.settings.audience_source != "snapshot":
            return None
        return AudienceSnapshots(lambda: self.import_blobs, self.meter)

    @cached_property
    def deliverability(self) -> Any:
        """Bounce and complaint rates per campaign and day against Gmail's lines."""
        from shared.analytics.sql_catalog import SqlCatalog
        from shared.services.deliverability import DeliverabilityService

        return DeliverabilityService(self.warehouse, SqlCatalog(self.sql_dialect))

    def domain_doctor(self, dns_server: str = "") -> Any:
        """The sending-domain checks, asking `dns_server` (HOST[:PORT]) or the system's."""
        from datetime import UTC, datetime

        from shared.adapters.dns.dnspython_lookup import DnspythonLookup
        from shared.services.doctor_inputs import marketing_headers, warehouse_rates
        from shared.services.domain_doctor import DomainDoctor

        headers = marketing_headers(self.campaigns, self.templates, self.renderer, self.clock)
        return DomainDoctor(DnspythonLookup(dns_server), self.doctor_config,
                            warehouse_rates(self.deliverability), headers,
                            lambda: datetime.fromtimestamp(self.clock(), UTC).date())  # fmt: skip

    @cached_property
    def doctor_config(self) -> Any:
        from shared.adapters.esp.dkim_signer import load_key
        from shared.services.domain_doctor import DoctorConfig

        s = self.settings
        key = load_key(s.dkim_private_key).public_b64 if s.dkim_private_key else ""
        return DoctorConfig(from_domain=s.sender_domain, esp=s.esp, spf_include=s.spf_include,
                            dkim_selector=s.dkim_selector, dkim_domain=s.dkim_domain,
                            dkim_public_key=key)  # fmt: skip

    @cached_property
    def sql_dialect(self) -> Any:
        """The warehouse's SQL dialect: BigQuery's, or DuckDB's in local mode."""
        return "duckdb" if self.settings.is_local else "bigquery"

    @cached_property
    def tracking(self) -> TrackingService:
        return TrackingService(self.outbox, self.settings.signing_key, self.clock, self.machines)

    @cached_property
    def webhooks(self) -> WebhookService:
        from shared.adapters.esp import webhook_parsers

        parsers = webhook_parsers.parsers_from_settings(
            self.settings, lambda: self.documents, self.sns_http
        )
        return WebhookService(
            parsers, self.outbox, self.clock, webhook_parsers.not_configured_message
        )

    @cached_property
    def sns_http(self) -> Any:
        """The two HTTPS requests an SNS subscriber makes (tests override it)."""
        from shared.adapters.esp.sns_certificates import RequestsSnsHttp

        return RequestsSnsHttp()

    @cached_property
    def dispatch(self) -> DispatchService:
        return DispatchService(self.dispatcher, lambda: self.campaign_service.sweep())

    # --- campaigns (issue 4) ----------------------------------------------------------
    @cached_property
    def campaigns(self) -> Any:
        from shared.repositories.campaigns import Campaigns

        return Campaigns(self.documents)

    @cached_property
    def campaign_gate(self) -> Any:
        """The send stage's campaign status check, cached per process for a few seconds."""
        from shared.repositories.campaigns import CachedStatuses
        from shared.services.campaigns import CampaignGate

        ttl = self.settings.campaign_gate_ttl_s
        return CampaignGate(CachedStatuses(self.campaigns, ttl, self.clock))

    @cached_property
    def audience_pages(self) -> Any:
        from shared.repositories.audience import AudiencePages

        return AudiencePages(self.documents, self.settings.campaign_page_size)

    @cached_property
    def remainder_stash(self) -> Any:
        """A/B remainder members kept from the test phase's audience read."""
        from shared.repositories.remainder_stash import RemainderStash

        return RemainderStash(self.documents)

    @cached_property
    def engagement(self) -> Any:
        from shared.services.engagement import EngagementQueries

        return EngagementQueries(self.pipeline_warehouse)

    @cached_property
    def dispatcher(self) -> Any:
        from shared.services.dispatch import PhaseDispatcher

        s = self.settings
        return PhaseDispatcher(self.campaigns, self.audience_pages, self.remainder_stash,
                               self.engagement, self.ledger, self.outbox, self.clock,
                               pages_per_run=s.campaign_pages_per_run, lease_s=s.campaign_lease_s,
                               batch_size=s.campaign_batch_size,
                               allowance=self.daily_allowance,
                               snapshots=self.audience_snapshots,
                               pacer=self.pacer)  # fmt: skip

    @cached_property
    def audience_snapshots(self) -> Any:
        """Audience snapshots (SQL over the subscriber mirror, chunks in the import blob
        store); None when MAILPIPE_AUDIENCE_SOURCE=documents."""
        from shared.repositories.audience_snapshots import AudienceSnapshots
        from shared.services.audience_snapshot import AudienceSnapshotService

        source = self.settings.audience_source
        if source not in ("snapshot", "documents"):
            raise ConfigurationError(
                f"MAILPIPE_AUDIENCE_SOURCE must be snapshot or documents, not {source!r}"
            )
        if source == "documents":
            return None
        store = AudienceSnapshots(lambda: self.import_blobs, self.meter)
        return AudienceSnapshotService(
            self.pipeline_warehouse, store, self.sql_dialect, self.clock,
            self.subscribers.confirmed_count, chunk_size=self.settings.campaign_page_size,
            mirror_wait_s=self.settings.audience_mirror_wait_s, meter=self.meter,
            piece_s=self.settings.audience_snapshot_piece_s,
        )  # fmt: skip

    @cached_property
    def pacer(self) -> Any:
        """Dispatch's pace: MAILPIPE_CAMPAIGN_SEND_RATE_PER_S recipients/s (0: unpaced)."""
        from shared.services.pacing import Pacer

        return Pacer(self.settings.campaign_send_rate_per_s)

    @cached_property
    def daily_allowance(self) -> Any:
        """Daily caps and warm-up per sending domain (issue 18)."""
        from shared.domain.sending_caps import DailyCap, parse_day
        from shared.repositories.sending_days import SendingDays
        from shared.services.daily_allowance import DailyAllowance

        s = self.settings
        try:
            volumes = tuple(int(v) for v in s.warmup_volumes)
        except ValueError as exc:
            raise ConfigurationError(
                f"MAILPIPE_WARMUP_VOLUMES={','.join(s.warmup_volumes)!r}: whole numbers only"
            ) from exc
        cap = DailyCap(daily_cap=s.daily_cap, volumes=volumes,
                       start_volume=s.warmup_start_volume, growth=s.warmup_growth,
                       start=parse_day(s.warmup_start, "MAILPIPE_WARMUP_START"))  # fmt: skip
        return DailyAllowance(SendingDays(self.documents), cap, s.sender, self.clock)

    @cached_property
    def campaign_preview(self) -> Any:
        from shared.services.campaign_preview import CampaignPreview

        return CampaignPreview(self.templates, self.renderer, self.blobs, self.audience_pages,
                               self.subscribers, self.outbox, self.clock)  # fmt: skip

    @cached_property
    def campaign_service(self) -> Any:
        """Campaign use cases: the admin API, the CLI and the sweep."""
        from shared.services.campaigns import CampaignService

        s = self.settings
        return CampaignService(
            self.campaigns,
            self.dispatcher,
            self.campaign_preview,
            self.ledger,
            self.subscribers,
            self.engagement,
            self.clock,
            page_size=s.campaign_page_size,
            stall_s=s.campaign_stall_s,
            held=self.held_batches.of_campaign,
        )

    @cached_property
    def held_batches(self) -> Any:
        """Campaign batches waiting in dead-letter holds (campaign status, mailpipe status)."""
        from shared.services.held_batches import HeldBatches

        return HeldBatches(self.dead_letters)

    @cached_property
    def template_library(self) -> Any:
        """Email templates as the console edits them (drafts, versions)."""
        from shared.services.campaign_preview import CampaignPreview
        from shared.services.template_library import TemplateLibrary

        def preview_for(blobs: BlobStore) -> CampaignPreview:
            return CampaignPreview(TemplateCatalog(blobs, check_interval_s=0), self.renderer,
                                   blobs, self.audience_pages, self.subscribers, self.outbox,
                                   self.clock)  # fmt: skip

        return TemplateLibrary(self.blobs, preview_for, self.clock)

    @cached_property
    def subscriber_admin(self) -> Any:
        """Finding and editing subscribers by hand (the console)."""
        from shared.services.subscriber_admin import SubscriberAdmin

        return SubscriberAdmin(self.documents, self.subscribers, self.suppressions,
                               self.unsubscribe, self.outbox, self.clock)  # fmt: skip

    @cached_property
    def audience_estimator(self) -> Any:
        """Audience size and GCP cost before a campaign is sent (the console)."""
        from shared.services.audience_estimate import AudienceEstimator, MirrorQueries

        mirror = None
        if self.settings.audience_source == "snapshot":
            mirror = MirrorQueries(self.pipeline_warehouse, self.sql_dialect)
        return AudienceEstimator(self.audience_pages, self.engagement, self.clock, mirror)

    @cached_property
    def subscriber_import(self) -> Any:
        from shared.services.subscriber_import import SubscriberImport

        return SubscriberImport(self.subscribers, self.suppressions, self.outbox, self.clock)

    @cached_property
    def import_blobs(self) -> BlobStore:
        """Import files and their rejects: DATA_DIR/blobs locally, the import bucket on GCP."""
        if self.settings.is_local:
            from shared.adapters.local.filesystem_blobs import FilesystemBlobs

            return FilesystemBlobs(self.settings.data_dir / "blobs")
        from shared.adapters.gcp import clients
        from shared.adapters.gcp.gcs_blobs import GcsBlobs

        if not self.settings.import_bucket:
            raise ConfigurationError("imports need MAILPIPE_IMPORT_BUCKET (Terraform sets it)")
        return GcsBlobs(clients.storage_client(self.settings), self.settings.import_bucket)

    @cached_property
    def imports(self) -> Any:
        """Imports of any size: upload, inspect, start, progress; the import function's steps."""
        from shared.repositories.imports import Imports
        from shared.services.imports import ImportService

        return ImportService(Imports(self.documents), self.import_blobs, self.subscriber_import,
                             self.outbox, self.clock, self.settings.import_chunk_rows,
                             self.settings.import_parallel_chunks)  # fmt: skip

    # --- behavioural triggers (issue 7) -------------------------------------------------
    @cached_property
    def event_intake(self) -> Any:
        from shared.services.event_intake import EventIntake

        return EventIntake(self.subscribers, self.outbox, self.clock)

    @cached_property
    def trigger_catalog(self) -> Any:
        from shared.services.trigger_catalog import TriggerCatalog

        interval = 2.0 if self.settings.is_local else 60.0
        return TriggerCatalog(self.blobs, self.settings.triggers_blob, interval)

    @cached_property
    def trigger_runs(self) -> Any:
        from shared.repositories.trigger_runs import TriggerRuns

        return TriggerRuns(self.documents)

    @cached_property
    def trigger_activity(self) -> Any:
        from shared.repositories.trigger_activity import TriggerActivity

        return TriggerActivity(self.documents)

    @cached_property
    def triggers(self) -> Any:
        """Behavioural triggers: start and cancel runs on events, send them when due."""
        from shared.services.trigger_sends import TriggerSender
        from shared.services.triggers import TriggerService

        sender = TriggerSender(self.trigger_runs, self.trigger_activity, self.subscribers,
                               self.suppressions, self.outbox, self.renderer.message_id,
                               self.settings.trigger_lease_s)  # fmt: skip
        return TriggerService(self.trigger_catalog, self.trigger_runs, self.trigger_activity,
                              sender, self.outbox, self.clock)  # fmt: skip

    @cached_property
    def warehousing(self) -> WarehouseService:
        return WarehouseService(self.warehouse)

    @cached_property
    def dashboards(self) -> Any:
        """The marketers' figures (shared/analytics): dashboard SQL in the warehouse's dialect."""
        from shared.analytics.dashboards import Dashboards
        from shared.analytics.sql_catalog import SqlCatalog

        catalog = SqlCatalog("duckdb" if self.settings.is_local else "bigquery")
        return Dashboards(self.warehouse, catalog, self.documents)


_lock = threading.Lock()
_container: Container | None = None


def container() -> Container:
    """This process's container, built from the environment on first use."""
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                settings = settings_module.load()
                if not settings.is_local:  # Cloud Logging reads JSON lines from stderr
                    from shared.logs import configure_logging

                    configure_logging(settings.log_level)
                _container = Container(settings)
    return _container


def installed() -> Container | None:
    """The container `install` (or `container`) set for this process, if any."""
    return _container


def install(new: Container | None) -> None:
    """Use `new` for this process (the local runner, tests); None forgets the current one."""
    global _container
    with _lock:
        _container = new


def require_local(c: Container) -> None:
    if not c.settings.is_local:
        raise ConfigurationError("this command needs MAILPIPE_BACKEND=local")
