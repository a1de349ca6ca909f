"""Charts as inline SVG, drawn on the server with matplotlib.

Server-side SVG needs no JavaScript and no network: the same markup works in the dashboard and
inside a self-contained HTML report, and text stays text (svg.fonttype "none") so a browser
can find the numbers in it. Each function returns an SVG document as a string, or "" when
there is nothing to draw (the page then says so in words).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from shared.analytics.dashboards import (
    COMPLAINT_RATE_LIMIT,
    COMPLAINT_RATE_TARGET,
    AbComparison,
    CampaignDay,
    DeliverabilityDay,
    GrowthDay,
    LinkClicks,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLOURS = {"blue": "#2563eb", "green": "#16a34a", "orange": "#ea580c", "red": "#dc2626",
           "grey": "#6b7280", "purple": "#7c3aed", "teal": "#0d9488"}  # fmt: skip
ALL_PROVIDERS = "all providers"
PROVIDER_COLOURS = {ALL_PROVIDERS: "#111827", "gmail": "#dc2626", "outlook": "#2563eb",
                    "yahoo": "#7c3aed", "icloud": "#6b7280", "other": "#0d9488"}  # fmt: skip
_configured = threading.Lock()
_ready = False


def _configure() -> None:
    """matplotlib's settings, once per process: no GUI backend, text kept as text,
    reproducible ids, and a neutral look."""
    global _ready
    with _configured:
        if _ready:
            return
        import matplotlib

        matplotlib.use("Agg")
        matplotlib.rcParams.update(
            {
                "svg.fonttype": "none",
                "svg.hashsalt": "mailpipe",
                "font.family": "sans-serif",
                "font.size": 10,
                "axes.spines.top": False,
                "axes.spines.right": False,
                "axes.grid": True,
                "axes.axisbelow": True,
                "grid.color": "#e5e7eb",
                "axes.edgecolor": "#9ca3af",
                "legend.frameon": False,
            }
        )
        _ready = True


def _figure(height: float = 3.2) -> Figure:
    _configure()
    from matplotlib.figure import Figure

    return Figure(figsize=(8.5, height), layout="constrained")


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inlined in HTML


def _percent_axis(ax: Axes, decimals: int = 1) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=decimals))


def _numbers(days: Sequence[date]) -> list[float]:
    """Dates as matplotlib's day numbers (what its date axes plot)."""
    from matplotlib.dates import date2num

    return [float(date2num(day)) for day in days]


MIN_DAYS_SHOWN = 7  # a per-day axis spans at least a week: one day is a bar, not the chart


def _date_axis(ax: Axes, x: Sequence[float]) -> None:
    """A per-day axis over the day numbers `x`: ticks on days (never hours), and at least
    MIN_DAYS_SHOWN days wide, so that little data looks like little data."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DateFormatter, DayLocator

    first, last = (min(x), max(x)) if x else (0.0, 0.0)
    if last - first < MIN_DAYS_SHOWN:
        middle = (first + last) / 2
        ax.set_xlim(middle - MIN_DAYS_SHOWN / 2, middle + MIN_DAYS_SHOWN / 2)
        ax.xaxis.set_major_locator(DayLocator())
        ax.xaxis.set_major_formatter(DateFormatter("%d %b"))
        return
    locator = AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def campaign_activity(days: Sequence[CampaignDay]) -> str:
    """Delivered messages, people who opened and people who clicked, per day."""
    if not days:
        return ""
    fig = _figure()
    ax = fig.add_subplot()
    x = _numbers([d.day for d in days])
    series = (
        ("Delivered", [d.delivered for d in days], COLOURS["grey"], -0.27),
        ("Opened (people)", [d.unique_opens for d in days], COLOURS["blue"], 0.0),
        ("Clicked (people)", [d.unique_clicks for d in days], COLOURS["green"], 0.27),
    )
    for label, values, colour, offset in series:
        ax.bar([day + offset for day in x], values, width=0.27, label=label, color=colour)
    _date_axis(ax, x)
    ax.set_ylabel("messages / people")
    ax.legend(loc="upper right")
    return _svg(fig)


def ab_comparison(ab: AbComparison) -> str:
    """Open and click rate per variant, with their 95% confidence intervals as error bars."""
    variants = [v for v in ab.variants if v.open_rate_ci and v.click_rate_ci]
    if not variants:
        return ""
    fig = _figure(height=1.2 + 0.9 * len(variants))
    axes = fig.subplots(1, 2, sharey=True)
    names = [f"Variant {v.variant}" for v in variants]
    panels = (
        (axes[0], "Open rate", "open_rate_ci", COLOURS["blue"]),
        (axes[1], "Click rate", "click_rate_ci", COLOURS["green"]),
    )
    for ax, title, attr, colour in panels:
        intervals = [getattr(v, attr) for v in variants]
        estimates = [i.estimate for i in intervals]
        errors = [
            [max(0.0, i.estimate - i.low) for i in intervals],
            [max(0.0, i.high - i.estimate) for i in intervals],
        ]
        ax.barh(names, estimates, xerr=errors, color=colour, alpha=0.85, capsize=6)
        for y, value in enumerate(estimates):
            ax.annotate(f"{value:.1%}", (0, y), xytext=(6, 0), textcoords="offset points",
                        va="center", color="white", fontweight="bold")  # fmt: skip
        ax.set_title(title)
        ax.set_xlim(0, max(i.high for i in intervals) * 1.25)
        from matplotlib.ticker import PercentFormatter

        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axes[0].invert_yaxis()  # the y axis is shared: variant A on top
    return _svg(fig)


MIN_VOLUME = 50  # below this many messages a day, one bounce or complaint is a spike, not news
_VOLUME = {"bounce_rate": ("bounces", "sent"), "complaint_rate": ("complaints", "delivered")}


def _by_provider(days: Sequence[DeliverabilityDay], attr: str) -> dict[str, tuple[list, list]]:
    """Per provider, and for all providers together, the days with enough volume."""
    events, base = _VOLUME[attr]
    totals: dict[date, list[int]] = {}
    lines: dict[str, tuple[list, list]] = {}
    for d in days:
        total = totals.setdefault(d.day, [0, 0])
        total[0] += getattr(d, events)
        total[1] += getattr(d, base)
        if getattr(d, base) >= MIN_VOLUME:
            xs, ys = lines.setdefault(d.mailbox_provider, ([], []))
            xs.append(_numbers([d.day])[0])
            ys.append(getattr(d, attr))
    for day, (count, volume) in sorted(totals.items()):
        if volume >= MIN_VOLUME:
            xs, ys = lines.setdefault(ALL_PROVIDERS, ([], []))
            xs.append(_numbers([day])[0])
            ys.append(count / volume)
    return lines


def rate_by_provider(days: Sequence[DeliverabilityDay], attr: str, thresholds: bool = False) -> str:
    """One line per mailbox provider (and one for all together) of the rate `attr` per day,
    on days with at least MIN_VOLUME messages; with `thresholds`, the complaint-rate lines
    mailbox providers act on."""
    lines = _by_provider(days, attr)
    if not lines:
        return ""
    fig = _figure()
    ax = fig.add_subplot()
    for provider, (xs, ys) in sorted(lines.items()):
        colour = PROVIDER_COLOURS.get(provider, COLOURS["grey"])
        width = 2.5 if provider == ALL_PROVIDERS else 1.2
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=width, label=provider, color=colour)
    if thresholds:
        ax.axhline(COMPLAINT_RATE_TARGET, color=COLOURS["orange"], linestyle="--", linewidth=1.2,
                   label=f"{COMPLAINT_RATE_TARGET:.1%} stay below")  # fmt: skip
        ax.axhline(COMPLAINT_RATE_LIMIT, color=COLOURS["red"], linestyle="--", linewidth=1.2,
                   label=f"{COMPLAINT_RATE_LIMIT:.1%} mail gets blocked")  # fmt: skip
    _percent_axis(ax, decimals=2 if thresholds else 1)
    highest = max(y for _, ys in lines.values() for y in ys)
    floor = 1.6 * COMPLAINT_RATE_LIMIT if thresholds else 0.01
    ax.set_ylim(0, max(floor, 1.15 * highest))
    _date_axis(ax, [day for xs, _ in lines.values() for day in xs])
    ax.legend(loc="upper left", ncols=4, fontsize=8)
    return _svg(fig)


def growth(days: Sequence[GrowthDay]) -> str:
    """New confirmed subscribers and unsubscribes per day (bars), their running net change since
    the first day the dashboards read (line)."""
    if not days:
        return ""
    fig = _figure(height=3.6)
    ax = fig.add_subplot()
    x = _numbers([d.day for d in days])
    ax.bar(x, [d.confirmations for d in days], color=COLOURS["green"], label="Confirmed")
    ax.bar(x, [-(d.unsubscribes + d.erasures) for d in days], color=COLOURS["red"],
           label="Unsubscribed or erased")  # fmt: skip
    ax.axhline(0, color="#9ca3af", linewidth=0.8)
    ax.set_ylabel("people per day")
    total = ax.twinx()
    total.plot(x, [d.subscribers for d in days], color=COLOURS["blue"], linewidth=2,
               label="Net change (running)")  # fmt: skip
    total.set_ylabel("net change")
    total.grid(False)
    total.set_ylim(bottom=0)
    _date_axis(ax, x)
    handles = ax.get_legend_handles_labels()[0] + total.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left")
    return _svg(fig)


def link_clicks(links: Sequence[LinkClicks], top: int = 10) -> str:
    """Clicks by people per link, most clicked first."""
    shown = [link for link in links[:top] if link.clicks]
    if not shown:
        return ""
    fig = _figure(height=0.9 + 0.45 * len(shown))
    ax = fig.add_subplot()
    labels = [_short(link.link_url) for link in shown]
    ax.barh(labels, [link.clicks for link in shown], color=COLOURS["teal"])
    ax.invert_yaxis()
    ax.set_xlabel("clicks by people")
    for y, link in enumerate(shown):
        ax.annotate(
            f"{link.clicks:,}", (link.clicks, y), xytext=(4, -3), textcoords="offset points"
        )
    return _svg(fig)


def _short(url: str, limit: int = 48) -> str:
    bare = url.split("://", 1)[-1]
    return bare if len(bare) <= limit else bare[: limit - 1] + "…"
