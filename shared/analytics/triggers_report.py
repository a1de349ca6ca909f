"""Trigger performance for the marketers: per trigger, how its runs ended, what it sent, who
clicked and who converted (sql/dashboards/trigger_performance.sql), joined with what the
definitions say (description, goal), so a declared trigger without activity shows too.

    trigger_performance(warehouse, catalog)          typed rows, one per trigger
    page_context(warehouse, catalog, definitions)    everything templates/dashboard/triggers.html
                                                     needs (the dashboard's /triggers page)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from shared.analytics.sql_catalog import SqlCatalog, Where
from shared.domain.triggers import Trigger, TriggerSet
from shared.ports import Warehouse

QUERY = "trigger_performance"


@dataclass(frozen=True)
class TriggerPerformance:
    """One trigger's figures; rates are fractions of the mails sent, None when none were."""

    trigger_id: str
    runs: int = 0  # runs that reached a final state
    sent: int = 0
    cancelled: int = 0  # an `unless` event came first
    capped: int = 0  # a frequency cap held the mail back
    skipped: int = 0  # unknown, unconfirmed or suppressed subscriber; trigger removed
    failed: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    conversions: int = 0
    click_rate: float | None = None
    conversion_rate: float | None = None


def trigger_performance(
    warehouse: Warehouse, catalog: SqlCatalog, trigger_id: str | None = None
) -> list[TriggerPerformance]:
    """Every trigger with activity (or just `trigger_id`), by trigger id."""
    where = [Where("trigger_id", "=", "trigger_id")] if trigger_id else []
    sql = catalog.query(QUERY, where, ["trigger_id"])
    rows = warehouse.query(sql, {"trigger_id": trigger_id} if trigger_id else None)
    return [_typed(row) for row in rows]


def _typed(row: dict[str, Any]) -> TriggerPerformance:
    names = {f.name for f in dataclasses.fields(TriggerPerformance)}
    values = {k: v for k, v in row.items() if k in names}
    for key, value in values.items():
        if key.endswith("_rate") and value is not None:
            values[key] = float(value)
        elif key != "trigger_id":
            values[key] = int(value or 0)
    return TriggerPerformance(**values)


@dataclass(frozen=True)
class TriggerRow:
    """A row of the dashboard's trigger table: the definition (None for a trigger that has
    since been removed) and its figures."""

    performance: TriggerPerformance
    definition: Trigger | None

    @property
    def goal(self) -> str:
        goal = self.definition.goal if self.definition else None
        return f"{goal.event} within {_days(goal.within_s)}" if goal else "—"


def page_context(
    warehouse: Warehouse, catalog: SqlCatalog, definitions: TriggerSet
) -> dict[str, Any]:
    """Template context of the triggers page: declared triggers first (in file order), then
    triggers that only the warehouse remembers."""
    figures = {p.trigger_id: p for p in trigger_performance(warehouse, catalog)}
    rows = [
        TriggerRow(figures.pop(t.id, TriggerPerformance(t.id)), t) for t in definitions.triggers
    ]
    rows += [TriggerRow(p, None) for _, p in sorted(figures.items())]
    totals = {
        key: sum(getattr(r.performance, key) for r in rows)
        for key in ("sent", "unique_clicks", "conversions")
    }
    return {"rows": rows, "totals": totals}


def _days(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    if rest == 0:
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{int(seconds) // 3600} hours"
