"""Tracking: open pixels and click redirects carry signed tokens; both become analytics events.

A click redirects only to the URL signed into that email's link (no open redirect): a forged
or altered token is InvalidToken (404). Each hit is classified human or machine
(shared/domain/machine_detection.py) and stored with `is_machine` and the rule that fired, so
reports can leave machine events out. Whether a message is tracked at all is decided when it is
rendered (per campaign: track_opens/track_clicks; per subscriber: Subscriber.tracking).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.domain import events as ev
from shared.domain import links, tokens
from shared.domain.errors import InvalidToken
from shared.domain.events import AnalyticsEvent, stable_id, utc_iso
from shared.domain.machine_detection import MachineDetector, Request, Verdict
from shared.services.publishing import Outbox


@dataclass(frozen=True)
class Hit:
    """One request to a tracking URL."""

    token: str
    user_agent: str = ""
    ip: str = ""
    at: float = 0.0


class TrackingService:
    def __init__(
        self,
        outbox: Outbox,
        signing_key: str,
        clock: Callable[[], float],
        machines: MachineDetector | None = None,
    ) -> None:
        self._outbox = outbox
        self._signing_key = signing_key
        self._clock = clock
        self._machines = machines or MachineDetector()

    def open(self, hit: Hit) -> None:
        """Record an open; InvalidToken for a forged or damaged pixel URL."""
        payload = _payload(self._signing_key, links.OPEN, hit.token)
        request = self._request(hit, payload, None)
        self._record(ev.OPEN, payload, request, self._machines.classify(request))

    def click(self, hit: Hit) -> str:
        """Record a click and return the one URL this link may go to."""
        payload = _as_dict(links.verify_click(self._signing_key, hit.token))
        url = payload.get("u")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise InvalidToken("this link is not valid")
        request = self._request(hit, payload, url)
        self._record(ev.CLICK, payload, request, self._machines.classify_click(request))
        return url

    def _request(self, hit: Hit, payload: dict[str, Any], url: str | None) -> Request:
        sent_at = payload.get("t")
        return Request(
            user_agent=hit.user_agent,
            ip=hit.ip,
            at=hit.at or self._clock(),
            message_id=payload.get("m"),
            url=url,
            sent_at=float(sent_at) if isinstance(sent_at, int | float) and sent_at > 0 else None,
        )

    def _record(
        self, event_type: str, payload: dict[str, Any], request: Request, verdict: Verdict
    ) -> None:
        properties: dict[str, Any] = {}
        if request.user_agent:
            properties["user_agent"] = request.user_agent[:200]
        if verdict.reason:
            properties["machine_reason"] = verdict.reason
        event = AnalyticsEvent(
            # Each request is its own event; a machine re-fetch is still counted, then filtered.
            event_id=stable_id(
                event_type,
                payload.get("m"),
                request.url,
                request.at,
                request.ip,
                request.user_agent,
            ),
            event_type=event_type,
            occurred_at=utc_iso(request.at),
            subscriber_id=payload.get("s"),
            campaign_id=payload.get("c"),
            message_id=payload.get("m"),
            link_url=request.url,
            is_machine=verdict.is_machine,
            properties=properties,
        )
        self._outbox.analytics([event])


def _payload(key: str, purpose: str, token: str) -> dict[str, Any]:
    return _as_dict(tokens.verify(key, purpose, token))


def _as_dict(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidToken("this link is not valid")
    return payload
