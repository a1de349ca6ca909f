"""What each dashboard page shows, as template context, and the templates that render it.

Shared by the Flask app (/dashboard) and the HTML report, so both show the same figures with
the same words. Templates live in templates/dashboard/.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from shared.analytics.dashboards import (
    COMPLAINT_RATE_LIMIT,
    COMPLAINT_RATE_TARGET,
    CampaignSummary,
    Dashboards,
    DeliverabilityDay,
)
from shared.dashboard import charts, formatting
from shared.domain.errors import InvalidInput
from shared.topology import REPO_ROOT

TEMPLATES = REPO_ROOT / "templates" / "dashboard"
Link = Callable[..., str]
# A campaign's sample messages, one per variant: (variant or None, subject, HTML).
Samples = Callable[[str], list[tuple[str | None, str, str]]]
UNSENT = ("draft", "scheduled")


@dataclass(frozen=True)
class Figure:
    """One headline number: what it is called, its value, and what it means."""

    key: str
    label: str
    kind: str  # "count" or "rate"
    explanation: str


CAMPAIGN_FIGURES = (
    Figure("sent", "Sent", "count", "Messages handed to the email provider."),
    Figure("delivered", "Delivered", "count", "Messages the recipients' mail servers accepted."),
    Figure("bounces", "Bounced", "count",
           "Messages returned as undeliverable. Hard bounces (the address does not exist) are "
           "never mailed again; soft bounces (full mailbox, server down) are temporary."),
    Figure("complaints", "Spam complaints", "count", "People who marked the message as spam."),
    Figure("unique_opens", "Opened", "count",
           "People who opened the message at least once. Opens by privacy proxies and "
           "security scanners (such as Apple Mail Privacy Protection) are left out: they are "
           "machines, not readers."),
    Figure("unique_clicks", "Clicked", "count",
           "People who clicked at least one link (link scanners left out)."),
    Figure("clicks", "Clicks", "count", "Every click by a person, several per person possible."),
    Figure("unsubscribes", "Unsubscribed", "count", "People who unsubscribed from this mail."),
    Figure("open_rate", "Open rate", "rate", "Opened ÷ delivered."),
    Figure("click_rate", "Click rate", "rate", "Clicked ÷ delivered: the share of recipients "
           "who acted on the mail."),
    Figure("click_to_open_rate", "Click-to-open rate", "rate",
           "Clicked ÷ opened: how convincing the content was to those who read it."),
    Figure("bounce_rate", "Bounce rate", "rate", "Bounced ÷ sent."),
    Figure("complaint_rate", "Complaint rate", "rate",
           f"Spam complaints ÷ delivered. Keep it below {COMPLAINT_RATE_TARGET:.1%}; above "
           f"{COMPLAINT_RATE_LIMIT:.1%} mailbox providers block the sender."),
)  # fmt: skip


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(number=formatting.number, percent=formatting.percent,
                       when=formatting.when)  # fmt: skip
    return env


def render(template: str, **context: Any) -> str:
    """A dashboard template with `context`; `link(endpoint, **args)` builds URLs, or is None
    in a stand-alone report (no navigation)."""
    context.setdefault("link", None)
    context.setdefault("generated_at", datetime.now(UTC))
    return environment().get_template(template).render(**context)


def figure_value(summary: CampaignSummary, figure: Figure) -> str:
    value = getattr(summary, figure.key)
    return formatting.percent(value) if figure.kind == "rate" else formatting.number(value)


def campaigns_context(d: Dashboards) -> dict[str, Any]:
    return {"campaigns": d.campaigns()}


def campaign_context(
    d: Dashboards, campaign_id: str, samples: Samples | None = None
) -> dict[str, Any]:
    """Everything about one campaign; NotFound when there is no such campaign. A campaign
    not sent yet shows its settings and (with `samples`) its messages instead of figures."""
    summary = d.campaign(campaign_id)
    if summary.sent == 0 and summary.status in UNSENT:
        return {"campaign": summary, "draft": draft_context(d, campaign_id, samples)}
    days = d.campaign_performance(campaign_id)
    ab = d.ab_results(campaign_id)
    links = d.link_clicks(campaign_id)
    return {
        "campaign": summary,
        "draft": None,
        "figures": [(f, figure_value(summary, f)) for f in CAMPAIGN_FIGURES],
        "days": days,
        "ab": ab,
        "links": links,
        "charts": {
            "activity": Markup(charts.campaign_activity(days)),
            "ab": Markup(charts.ab_comparison(ab)),
            "links": Markup(charts.link_clicks(links)),
        },
    }


def draft_context(d: Dashboards, campaign_id: str, samples: Samples | None) -> dict[str, Any]:
    """A campaign's settings as a person reads them, and its rendered sample messages."""
    doc = d.campaign_document(campaign_id)
    ab = doc.get("ab") if isinstance(doc.get("ab"), dict) else None
    segment = doc.get("segment")
    settings = [
        ("Template", str(doc.get("template") or "—")),
        ("Subject", str(doc.get("subject") or "the template's own <title>")),
        ("Sender", str(doc.get("sender") or "the default sender (MAILPIPE_SENDER)")),
        ("Audience", json.dumps(segment) if segment else "every confirmed subscriber"),
        ("Created", formatting.when(_moment(doc.get("created_at")))),
    ]
    if doc.get("scheduled_at"):
        settings.append(("Scheduled for", formatting.when(_moment(doc.get("scheduled_at")))))
    if ab:
        names = ", ".join(str(v.get("name")) for v in ab.get("variants", []))
        settings.append(("A/B test", f"variants {names}; winner by {ab.get('metric', 'clicks')}"))
    previews: list[tuple[str | None, str, str]] = []
    problem = ""
    if samples is not None:
        try:
            previews = samples(campaign_id)
        except InvalidInput as exc:
            problem = str(exc)
    return {"settings": settings, "previews": previews, "problem": problem}


def samples_from(services: Callable[[], Any]) -> Samples:
    """A campaign's messages for a made-up subscriber, rendered by the container's preview."""

    def samples(campaign_id: str) -> list[tuple[str | None, str, str]]:
        from shared.services.campaign_preview import sample_message

        c = services()
        campaign = c.campaigns.get(campaign_id)
        emails = sample_message(c.campaign_preview, campaign)
        names = campaign.variant_names()
        return [(v, e.subject, e.html) for v, e in zip(names, emails, strict=True)]

    return samples


def _moment(epoch: Any) -> datetime | None:
    return datetime.fromtimestamp(float(epoch), UTC) if isinstance(epoch, int | float) else None


def with_delivery(context: dict[str, Any], delivery: Any) -> dict[str, Any]:
    """The campaign page's context with what the send ledger says: the status people read
    ("delivering" until every recipient has its final outcome) and what is not final yet."""
    summary = context["campaign"]
    status = delivery.status_of(summary.status)
    return {**context, "campaign": dataclasses.replace(summary, status=status),
            "delivery": delivery}  # fmt: skip


def deliverability_context(d: Dashboards, days: int, today: date | None = None) -> dict[str, Any]:
    since = (today or datetime.now(UTC).date()) - timedelta(days=days - 1)
    rows = d.deliverability(since)
    return {
        "days": days,
        "since": since,
        "rows": rows,
        "providers": _provider_totals(rows),
        "target": COMPLAINT_RATE_TARGET,
        "limit": COMPLAINT_RATE_LIMIT,
        "min_volume": charts.MIN_VOLUME,
        "charts": {
            "bounces": Markup(charts.rate_by_provider(rows, "bounce_rate")),
            "complaints": Markup(charts.rate_by_provider(rows, "complaint_rate", True)),
        },
    }


def _provider_totals(rows: list[DeliverabilityDay]) -> list[dict[str, Any]]:
    """Per mailbox provider over the whole period, with the same rate definitions."""
    totals: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = totals.setdefault(r.mailbox_provider, {"mailbox_provider": r.mailbox_provider,
                                                   "sent": 0, "delivered": 0, "bounces": 0,
                                                   "hard_bounces": 0, "complaints": 0})  # fmt: skip
        for key in ("sent", "delivered", "bounces", "hard_bounces", "complaints"):
            t[key] += getattr(r, key)
    for t in totals.values():
        t["bounce_rate"] = t["bounces"] / t["sent"] if t["sent"] else None
        t["complaint_rate"] = t["complaints"] / t["delivered"] if t["delivered"] else None
    return sorted(totals.values(), key=lambda t: -t["sent"])


def growth_context(d: Dashboards, days: int, today: date | None = None) -> dict[str, Any]:
    since = (today or datetime.now(UTC).date()) - timedelta(days=days - 1)
    # The query reads the last WINDOW_DAYS (sql_catalog), so its running total starts there,
    # not at the list's first day: the page shows the net change over the days it shows.
    rows = [r for r in d.growth() if r.day >= since]
    return {
        "days": days,
        "since": since,
        "rows": rows,
        "totals": {
            "signups": sum(r.signups for r in rows),
            "confirmations": sum(r.confirmations for r in rows),
            "unsubscribes": sum(r.unsubscribes for r in rows),
            "erasures": sum(r.erasures for r in rows),
            "net_change": sum(r.net_change for r in rows) if rows else None,
        },
        "charts": {"growth": Markup(charts.growth(rows))},
    }
