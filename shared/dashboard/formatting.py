"""How figures read to a person: thousands separators, percentages with sensible precision,
and a dash for a rate that cannot be computed (nothing to divide by)."""

from __future__ import annotations

from datetime import date, datetime

DASH = "—"


def number(value: int | float | None) -> str:
    """12,345; a dash for None."""
    if value is None:
        return DASH
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def percent(rate: float | None) -> str:
    """A fraction of 1 as a percentage: 1 decimal (4.2%), 2 below 1% (0.15%), a dash for None."""
    if rate is None:
        return DASH
    shown = rate * 100
    if shown == 0:
        return "0%"
    return f"{shown:.2f}%" if abs(shown) < 1 else f"{shown:.1f}%"


def when(value: datetime | date | None) -> str:
    """2026-06-03 14:05 UTC, or the date alone; a dash for None."""
    if value is None:
        return DASH
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()
