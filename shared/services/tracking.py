"""Tracking: open pixels and click redirects carry signed tokens; both become analytics events.

A click redirects only to the URL signed into that email's link (no open redirect).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.domain import events as ev
from shared.domain import links, tokens
from shared.domain.events import AnalyticsEvent, stable_id, utc_iso
from shared.services.publishing import Outbox

MachineClassifier = Callable[["Hit"], bool]


@dataclass(frozen=True)
class Hit:
    """One request to a tracking URL."""

    token: str
    user_agent: str = ""
    ip: str = ""
    at: float = 0.0


def never_machine(hit: Hit) -> bool:
    return False


class TrackingService:
    def __init__(
        self,
        outbox: Outbox,
        signing_key: str,
        clock: Callable[[], float],
        classify_machine: MachineClassifier = never_machine,
    ) -> None:
        self._outbox = outbox
        self._signing_key = signing_key
        self._clock = clock
        self._is_machine = classify_machine

    def open(self, hit: Hit) -> None:
        """Record an open; InvalidToken for a forged or damaged pixel URL."""
        payload = tokens.verify(self._signing_key, links.OPEN, hit.token)
        self._record(ev.OPEN, payload, hit, None)

    def click(self, hit: Hit) -> str:
        """Record a click and return the one URL this link may go to."""
        payload = tokens.verify(self._signing_key, links.CLICK, hit.token)
        url = str(payload["u"])
        self._record(ev.CLICK, payload, hit, url)
        return url

    def _record(self, event_type: str, payload: dict, hit: Hit, url: str | None) -> None:
        now = hit.at or self._clock()
        event = AnalyticsEvent(
            # Each request is its own event; a machine re-fetch is still counted, then filtered.
            event_id=stable_id(event_type, payload.get("m"), url, now, hit.ip, hit.user_agent),
            event_type=event_type,
            occurred_at=utc_iso(now),
            subscriber_id=payload.get("s"),
            campaign_id=payload.get("c"),
            message_id=payload.get("m"),
            link_url=url,
            is_machine=self._is_machine(hit),
            properties={"user_agent": hit.user_agent[:200]} if hit.user_agent else {},
        )
        self._outbox.analytics([event])
