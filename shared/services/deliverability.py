"""Bounce and complaint rates per campaign and per day, compared with Gmail's lines.

Source of the lines: Google's "Email sender guidelines" (Gmail Help, answer 81126, "Sender
requirements and guidelines", updated for the February 2024 bulk-sender rules): keep the spam
rate reported in Postmaster Tools below 0.10% and avoid ever reaching 0.30%. Gmail publishes no
bounce-rate line, so bounce rates are flagged against the same two marks, as the issue asks,
which is deliberately strict. The SQL is sql/dashboards/deliverability_by_campaign_day.sql
(BigQuery dialect, a view in Terraform; transpiled for DuckDB locally).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

GMAIL_RECOMMENDED = 0.001  # 0.10%
GMAIL_MAXIMUM = 0.003  # 0.30%
QUERY = "deliverability_by_campaign_day"


class QueryCatalog(Protocol):
    def query(self, name: str, where: Any = (), order_by: Any = ()) -> str: ...


class RatesWarehouse(Protocol):
    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class CampaignDayRates:
    campaign_id: str | None
    day: date
    sent: int
    delivered: int
    bounces: int
    hard_bounces: int
    soft_bounces: int
    complaints: int
    bounce_rate: float | None
    complaint_rate: float | None
    complaint_over_recommended: bool
    complaint_over_maximum: bool
    bounce_over_recommended: bool
    bounce_over_maximum: bool


class DeliverabilityService:
    def __init__(self, warehouse: RatesWarehouse, catalog: QueryCatalog) -> None:
        self._warehouse = warehouse
        self._catalog = catalog

    def rates(self) -> list[CampaignDayRates]:
        """Every campaign-day with sends or feedback, oldest day first."""
        sql = self._catalog.query(QUERY, (), ("day", "campaign_id"))
        return [_typed(row) for row in self._warehouse.query(sql, {})]

    def over_the_line(self) -> list[CampaignDayRates]:
        """Campaign-days whose complaint or bounce rate reached Gmail's 0.1% mark."""
        return [
            r for r in self.rates() if r.complaint_over_recommended or r.bounce_over_recommended
        ]


_COUNTS = ("sent", "delivered", "bounces", "hard_bounces", "soft_bounces", "complaints")
_FLAGS = ("complaint_over_recommended", "complaint_over_maximum", "bounce_over_recommended",
          "bounce_over_maximum")  # fmt: skip


def _typed(row: dict[str, Any]) -> CampaignDayRates:
    day = row["day"]
    values: dict[str, Any] = {k: int(row.get(k) or 0) for k in _COUNTS}
    values.update({k: bool(row.get(k)) for k in _FLAGS})
    return CampaignDayRates(
        campaign_id=row.get("campaign_id"),
        day=day if isinstance(day, date) else date.fromisoformat(str(day)[:10]),
        bounce_rate=_rate(row.get("bounce_rate")),
        complaint_rate=_rate(row.get("complaint_rate")),
        **values,
    )


def _rate(value: Any) -> float | None:
    return None if value is None else float(value)
