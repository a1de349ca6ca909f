"""One counter document per sending domain and UTC day: how much of the day's cap is taken.

    sending_days/<domain>:<YYYY-MM-DD>
        domain, day, limit, used (the sum of `pages`), pages {page key: recipients}

A dispatch page reserves under its own key (`<campaign>:<phase>:<page>`), so a redelivered or
replayed page gets the same grant back instead of a second one, and two campaigns on the same
day share the allowance through atomic updates of the one document. Once published, the page
settles to what it really dispatched (recipients who matched; holdouts and exclusions are given
back). A page is a few hundred recipients, so a day's document holds at most a few thousand
keys: one read and one write per page, never per recipient.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from shared.domain.sending_caps import grant
from shared.ports import DocumentStore

COLLECTION = "sending_days"


@dataclass(frozen=True)
class DayUsage:
    domain: str
    day: date
    limit: int
    used: int

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)


def _doc_id(domain: str, day: date) -> str:
    return f"{domain}:{day.isoformat()}"


class SendingDays:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def reserve(self, domain: str, day: date, key: str, want: int, limit: int) -> int:
        """Up to `want` of the day's `limit` for page `key` (the same answer on a replay)."""
        granted: list[int] = []

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            current = doc or {"domain": domain, "day": day.isoformat(), "used": 0, "pages": {}}
            pages = dict(current.get("pages") or {})
            if key in pages:
                granted[:] = [int(pages[key])]
                return None
            used = int(current.get("used", 0))
            amount = grant(want, max(0, limit - used), limit)
            granted[:] = [amount]
            if not amount:
                return None
            pages[key] = amount
            return {**current, "limit": limit, "used": used + amount, "pages": pages}

        self._store.update(COLLECTION, _doc_id(domain, day), apply)
        return granted[0]

    def settle(self, domain: str, day: date, key: str, used: int) -> None:
        """Page `key` dispatched `used` recipients: give back the rest of its grant."""

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            pages = dict((doc or {}).get("pages") or {})
            if doc is None or key not in pages or pages[key] <= used:
                return None
            total = int(doc.get("used", 0)) - int(pages[key]) + used
            pages[key] = used
            return {**doc, "used": total, "pages": pages}

        self._store.update(COLLECTION, _doc_id(domain, day), apply)

    def usage(self, domain: str, day: date, limit: int) -> DayUsage:
        doc = self._store.get(COLLECTION, _doc_id(domain, day)) or {}
        return DayUsage(domain, day, limit, int(doc.get("used", 0)))
