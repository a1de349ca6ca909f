"""The marketers' figures, typed: campaign performance, A/B results, deliverability, subscriber
growth, clicks per link and send rates.

Everything goes through the Warehouse port with the SQL in sql/dashboards (see sql_catalog)
and the campaign documents of the document store, so the same code reads DuckDB locally and
BigQuery on GCP. Rates are fractions of 1, or None when their denominator is zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from shared.analytics.sql_catalog import SqlCatalog, Where
from shared.analytics.stats import Interval, wilson_interval
from shared.domain.errors import InvalidInput, NotFound
from shared.ports import DocumentStore, Warehouse, paged

CAMPAIGNS = "campaigns"  # document store collection written by the campaign engine
BY_CAMPAIGN = (Where("campaign_id", "=", "campaign_id"),)

# Mailbox providers filter senders whose complaint rate passes the first line and block them
# above the second (Gmail's and Yahoo's bulk sender rules, 2024).
COMPLAINT_RATE_TARGET = 0.001
COMPLAINT_RATE_LIMIT = 0.003


@dataclass(frozen=True)
class CampaignSummary:
    """One campaign's totals (campaign_summary.sql) and what its document says about it."""

    campaign_id: str
    name: str = ""
    status: str = "unknown"
    variants: tuple[str, ...] = ()
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None
    sent: int = 0
    failed: int = 0
    delivered: int = 0
    bounces: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    unique_opens: int = 0
    machine_opens: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    machine_clicks: int = 0
    unsubscribes: int = 0
    delivery_rate: float | None = None
    bounce_rate: float | None = None
    complaint_rate: float | None = None
    open_rate: float | None = None
    click_rate: float | None = None
    click_to_open_rate: float | None = None
    unsubscribe_rate: float | None = None
    created_at: datetime | None = None  # from the campaign document


@dataclass(frozen=True)
class CampaignDay:
    """One campaign's activity on one day (campaign_daily.sql)."""

    campaign_id: str
    day: date
    sent: int = 0
    delivered: int = 0
    bounces: int = 0
    complaints: int = 0
    unique_opens: int = 0
    machine_opens: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    unsubscribes: int = 0
    click_rate: float | None = None
    click_to_open_rate: float | None = None


@dataclass(frozen=True)
class VariantResult:
    """One A/B variant's counts (ab_results.sql) with 95% Wilson intervals of its rates."""

    campaign_id: str
    variant: str
    sent: int = 0
    delivered: int = 0
    bounces: int = 0
    complaints: int = 0
    unique_opens: int = 0
    unique_clicks: int = 0
    unsubscribes: int = 0
    open_rate: float | None = None
    click_rate: float | None = None
    click_to_open_rate: float | None = None
    open_rate_ci: Interval | None = None
    click_rate_ci: Interval | None = None


@dataclass(frozen=True)
class Verdict:
    """What the winner rule says: `winner` is a variant name, or None while undecided."""

    winner: str | None
    decided: bool
    explanation: str


@dataclass(frozen=True)
class VariantSetting:
    """What a variant was: its subject line and template (the campaign's when it has none)."""

    subject: str
    template: str


@dataclass(frozen=True)
class AbComparison:
    campaign_id: str
    variants: list[VariantResult]
    metric: str  # the rate the winner rule compares
    verdict: Verdict
    settings: dict[str, VariantSetting] = field(default_factory=dict)  # by variant name


@dataclass(frozen=True)
class DeliverabilityDay:
    """Mail to one mailbox provider on one day (deliverability_by_day.sql)."""

    day: date
    mailbox_provider: str
    sent: int = 0
    delivered: int = 0
    bounces: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    bounce_rate: float | None = None
    hard_bounce_rate: float | None = None
    complaint_rate: float | None = None


@dataclass(frozen=True)
class GrowthDay:
    """Subscriber lifecycle on one day (subscriber_growth.sql)."""

    day: date
    signups: int = 0
    confirmations: int = 0
    unsubscribes: int = 0
    erasures: int = 0
    net_change: int = 0
    subscribers: int = 0
    churn_rate: float | None = None


@dataclass(frozen=True)
class LinkClicks:
    """Clicks on one link of one campaign (link_clicks.sql)."""

    campaign_id: str
    link_url: str
    clicks: int = 0
    unique_clicks: int = 0
    machine_clicks: int = 0


@dataclass(frozen=True)
class MinuteRate:
    """Sending activity in one minute (send_rate_by_minute.sql)."""

    minute: datetime
    sent: int = 0
    failed: int = 0
    suppressed: int = 0


VerdictRule = Callable[[Sequence[VariantResult]], Verdict]


def no_rule_wired(variants: Sequence[VariantResult]) -> Verdict:
    """The verdict when no winner rule is configured: the intervals are shown, no winner."""
    return Verdict(None, False, "No winner rule is configured; compare the intervals.")


def campaign_rule(spec: Any, variants: Sequence[VariantResult]) -> tuple[str, Verdict]:
    """(metric, verdict) of the campaign's own pre-registered winner rule (its `ab` spec, see
    shared/domain/ab_test.py) applied to the figures so far; no verdict without a valid spec."""
    from shared.domain import ab_test

    try:
        ab = ab_test.AbTest.from_spec(spec)
    except InvalidInput:
        return "click_rate", no_rule_wired(variants)
    clicks = ab.metric == "clicks"
    observed = {
        v.variant: ab_test.VariantResult(
            v.variant, v.sent, v.unique_clicks if clicks else v.unique_opens
        )
        for v in variants
    }
    decision = ab_test.decide_winner(ab, observed)
    winner = decision.winner if decision.significant else None
    reason = decision.reason[0].upper() + decision.reason[1:] + "."
    return ("click_rate" if clicks else "open_rate"), Verdict(winner, decision.significant, reason)


@dataclass
class Dashboards:
    """Typed dashboard figures over the Warehouse port (and campaign documents, when given)."""

    warehouse: Warehouse
    catalog: SqlCatalog
    documents: DocumentStore | None = None
    verdict_rule: VerdictRule | None = None  # None: the campaign document's `ab` rule
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # --- campaigns -----------------------------------------------------------------------
    def campaigns(self) -> list[CampaignSummary]:
        """Every campaign that has a document or events, newest send first."""
        rows = {r["campaign_id"]: r for r in self._query("campaign_summary")}
        docs = self._campaign_documents()
        found = [_summary(cid, rows.get(cid), docs.get(cid)) for cid in rows.keys() | docs.keys()]
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda c: (c.first_sent_at or oldest, c.campaign_id), reverse=True)

    def campaign(self, campaign_id: str) -> CampaignSummary:
        """One campaign's totals; NotFound when it has neither a document nor events."""
        rows = self._query("campaign_summary", BY_CAMPAIGN, {"campaign_id": campaign_id})
        doc = self.documents.get(CAMPAIGNS, campaign_id) if self.documents else None
        if not rows and doc is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        return _summary(campaign_id, rows[0] if rows else None, doc)

    def campaign_document(self, campaign_id: str) -> dict[str, Any]:
        """The campaign's settings as stored ({} when there is no document)."""
        doc = self.documents.get(CAMPAIGNS, campaign_id) if self.documents else None
        return dict(doc or {})

    def campaign_performance(self, campaign_id: str) -> list[CampaignDay]:
        """The campaign's activity per day, oldest first."""
        rows = self._query("campaign_daily", BY_CAMPAIGN, {"campaign_id": campaign_id}, ["day"])
        return [_typed(CampaignDay, r) for r in rows]

    def ab_results(self, campaign_id: str) -> AbComparison:
        """Per-variant counts and rates with 95% intervals, and the winner rule's verdict."""
        rows = self._query("ab_results", BY_CAMPAIGN, {"campaign_id": campaign_id}, ["variant"])
        variants = [_per_recipient(_typed(VariantResult, r)) for r in rows]
        doc = self.documents.get(CAMPAIGNS, campaign_id) if self.documents else None
        settings = _variant_settings(doc or {})
        if self.verdict_rule is not None:
            verdict = self.verdict_rule(variants)
            return AbComparison(campaign_id, variants, "click_rate", verdict, settings)
        metric, verdict = campaign_rule((doc or {}).get("ab"), variants)
        return AbComparison(campaign_id, variants, metric, verdict, settings)

    def link_clicks(self, campaign_id: str) -> list[LinkClicks]:
        """Links of the campaign, most clicked (by people) first."""
        rows = self._query("link_clicks", BY_CAMPAIGN, {"campaign_id": campaign_id}, ["link_url"])
        links = [_typed(LinkClicks, r) for r in rows]
        return sorted(links, key=lambda link: (-link.clicks, link.link_url))

    # --- list health -----------------------------------------------------------------------
    def deliverability(self, since: date | None = None) -> list[DeliverabilityDay]:
        """Bounce and complaint figures per day and mailbox provider, oldest first."""
        where, params = _since("day", since)
        rows = self._query("deliverability_by_day", where, params, ["day", "mailbox_provider"])
        return [_typed(DeliverabilityDay, r) for r in rows]

    def growth(self, since: date | None = None) -> list[GrowthDay]:
        """Signups, confirmations, unsubscribes and the running total per day, oldest first."""
        where, params = _since("day", since)
        return [
            _typed(GrowthDay, r) for r in self._query("subscriber_growth", where, params, ["day"])
        ]

    def send_rates(self, since: datetime) -> list[MinuteRate]:
        """Messages sent, failed and suppressed per minute from `since` (aware, UTC)."""
        where = (Where("minute", ">=", "since"),)
        rows = self._query("send_rate_by_minute", where, {"since": since}, ["minute"])
        return [_typed(MinuteRate, r) for r in rows]

    # --- plumbing --------------------------------------------------------------------------
    def _query(
        self,
        name: str,
        where: Sequence[Where] = (),
        params: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        return self.warehouse.query(self.catalog.query(name, where, order_by), params or {})

    def _campaign_documents(self) -> dict[str, dict[str, Any]]:
        if self.documents is None:
            return {}
        return {i: d for page in paged(self.documents, CAMPAIGNS) for i, d in page}


T = TypeVar("T")


def _typed(cls: type[T], row: Mapping[str, Any]) -> T:
    """`cls` from a result row: unknown columns are ignored, timestamps become aware UTC."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: _utc(v) for k, v in row.items() if k in names}
    return cls(**values)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # DuckDB TIMESTAMP columns hold UTC, naively
    return value


def _since(column: str, since: date | None) -> tuple[tuple[Where, ...], dict[str, Any]]:
    if since is None:
        return (), {}
    return (Where(column, ">=", "since"),), {"since": since}


def _summary(
    campaign_id: str, row: Mapping[str, Any] | None, doc: Mapping[str, Any] | None
) -> CampaignSummary:
    doc = doc or {}
    summary = _typed(CampaignSummary, {**(row or {}), "campaign_id": campaign_id})
    return dataclasses.replace(
        summary,
        name=str(doc.get("name") or campaign_id),
        status=str(doc.get("status") or ("sent" if summary.sent else "unknown")),
        variants=_variant_names(doc.get("variants")),
        created_at=_created(doc.get("created_at")),
    )


def _created(epoch: Any) -> datetime | None:
    return datetime.fromtimestamp(float(epoch), UTC) if isinstance(epoch, int | float) else None


def _variant_names(raw: Any) -> tuple[str, ...]:
    """Variant names from a campaign document, whichever shape the campaign engine uses."""
    if isinstance(raw, Mapping):
        return tuple(str(k) for k in raw)
    if not isinstance(raw, list | tuple):
        return ()
    names = []
    for item in raw:
        if isinstance(item, Mapping):
            names.append(str(item.get("name") or item.get("id") or item.get("key") or "?"))
        else:
            names.append(str(item))
    return tuple(names)


def _per_recipient(v: VariantResult) -> VariantResult:
    """Rates and 95% intervals per message sent to the variant: the measure the winner rule
    compares (shared/domain/ab_test.py), so the table and the verdict divide by the same
    totals."""
    if not v.sent:
        return dataclasses.replace(v, open_rate=None, click_rate=None)
    return dataclasses.replace(
        v,
        open_rate=v.unique_opens / v.sent,
        click_rate=v.unique_clicks / v.sent,
        open_rate_ci=wilson_interval(v.unique_opens, v.sent),
        click_rate_ci=wilson_interval(v.unique_clicks, v.sent),
    )


def _variant_settings(doc: Mapping[str, Any]) -> dict[str, VariantSetting]:
    """Each variant's subject and template from the campaign document's A/B spec."""
    spec = doc.get("ab")
    found = spec.get("variants") if isinstance(spec, Mapping) else None
    settings = {}
    for item in found if isinstance(found, list) else []:
        if isinstance(item, Mapping) and item.get("name"):
            settings[str(item["name"])] = VariantSetting(
                str(item.get("subject") or doc.get("subject") or "the template's own subject"),
                str(item.get("template") or doc.get("template") or "?"),
            )
    return settings
