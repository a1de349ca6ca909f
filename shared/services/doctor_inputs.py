"""What the domain doctor reads besides DNS: send rates from the warehouse and the headers of
a rendered marketing message (the newest campaign's template, else the newsletter)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date

from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.repositories.campaigns import Campaigns
from shared.services.deliverability import DeliverabilityService
from shared.services.domain_doctor import HeadersSource, RatesSource, SendRates, rates_from_days
from shared.services.rendering import Renderer
from shared.services.templating import TemplateCatalog

FALLBACK_TEMPLATE = "newsletter"


def warehouse_rates(deliverability: DeliverabilityService) -> RatesSource:
    def rates(first: date, last: date) -> SendRates:
        rows = [(r.day, r.sent, r.bounces, r.complaints) for r in deliverability.rates()]
        return rates_from_days(rows, first, last)

    return rates


def marketing_headers(
    campaigns: Campaigns,
    templates: TemplateCatalog,
    renderer: Renderer,
    clock: Callable[[], float],
) -> HeadersSource:
    def headers() -> Mapping[str, str]:
        recent = sorted(campaigns.query(limit=200), key=lambda c: c.created_at)
        template = recent[-1].template if recent else FALLBACK_TEMPLATE
        request = RenderRequest(
            batch_id="doctor",
            template=template,
            kind=MARKETING,
            audience_at=clock(),
            recipients=[],
            campaign_id="doctor",
        )
        person = Recipient("doctor", "doctor@example.com", "Doctor")
        return renderer.render(templates.email(template), request, person).headers

    return headers
