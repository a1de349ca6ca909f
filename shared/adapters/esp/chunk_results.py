"""ChunkResults: one chunk's SendResults, filled in as the provider answers.

Every mailer sends a chunk in one or more requests (SMTP transactions, API calls). When the
provider stops answering normally halfway (it throttles us, or becomes unreachable), what it
already accepted must still be reported as sent, or a retry of the whole chunk would send those
messages twice. `interrupted` applies the Mailer port's rule: nothing accepted yet -> raise
(the whole chunk may be retried as it is); otherwise -> return the results, with everything
not yet answered marked transient ("throttled: ..." when the provider asked us to slow down,
which the rate limiter reads as a signal too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from shared.domain.errors import Throttled, TransientError
from shared.ports import OutgoingEmail, SendResult, SendStatus

G = TypeVar("G")
THROTTLED_PREFIX = "throttled: "
MAX_DETAIL = 300


def is_throttled(result: SendResult) -> bool:
    """A transient result deferred because the provider asked us to slow down."""
    return result.status == "transient" and result.detail.startswith(THROTTLED_PREFIX)


class ChunkResults:
    def __init__(self, emails: Sequence[OutgoingEmail]) -> None:
        self.emails = list(emails)
        self._results: list[SendResult | None] = [None] * len(self.emails)

    @property
    def accepted_any(self) -> bool:
        return any(r is not None and r.status == "sent" for r in self._results)

    def pending(self) -> list[int]:
        """Positions not answered yet, in order."""
        return [i for i, r in enumerate(self._results) if r is None]

    def sent(self, indexes: Iterable[int], provider_message_id: str = "") -> None:
        for i in indexes:
            pid = provider_message_id or self.emails[i].message_id
            self._set(i, "sent", provider_message_id=pid)

    def permanent(self, indexes: Iterable[int], detail: str) -> None:
        for i in indexes:
            self._set(i, "permanent", detail=detail)

    def transient(self, indexes: Iterable[int], detail: str) -> None:
        for i in indexes:
            self._set(i, "transient", detail=detail)

    def send_groups(
        self, groups: Iterable[G], send_group: Callable[[ChunkResults, G], None]
    ) -> list[SendResult]:
        """Send group after group (one request each); a TransientError stops the chunk under
        the `interrupted` rule. The HTTP providers' `send`."""
        for group in groups:
            try:
                send_group(self, group)
            except TransientError as exc:
                return self.interrupted(exc)
        return self.results()

    def interrupted(self, error: TransientError) -> list[SendResult]:
        """Raises `error` when nothing was accepted yet; else the results with the rest
        transient."""
        if not self.accepted_any:
            raise error
        prefix = THROTTLED_PREFIX if isinstance(error, Throttled) else ""
        self.transient(self.pending(), f"{prefix}{error}")
        return self.results()

    def results(self) -> list[SendResult]:
        """All results in chunk order; a message never answered counts as transient."""
        self.transient(self.pending(), "no answer from the provider")
        return [r for r in self._results if r is not None]

    def _set(self, index: int, status: SendStatus, **fields: str) -> None:
        if "detail" in fields:
            fields["detail"] = fields["detail"][:MAX_DETAIL]
        self._results[index] = SendResult(self.emails[index].message_id, status, **fields)
