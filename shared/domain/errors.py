"""The domain's error tree. Adapters translate SDK errors into these at the boundary.

MailpipeError
├── InvalidInput          permanent: the caller's input is wrong (HTTP 4xx, event acked)
│   └── InvalidAddress    an email address that cannot receive mail
├── NotFound              the thing asked for does not exist (or must not be revealed)
│   └── InvalidToken      unknown, expired, tampered with or already used
├── AlreadyExists         create-if-absent found the document (idempotency hit)
├── AlreadyProcessed      this event/batch already had its effect (acknowledge it)
├── Conflict              a state change is not allowed from the current state
├── Unauthorized          a signature or API key is missing, invalid or stale (HTTP 401)
├── RateLimited           the caller must slow down (HTTP 429)
├── TransientError        retry later: the platform redelivers, then dead-letters
│   └── Throttled         a provider asked us to slow down, maybe with Retry-After
├── PermanentFailure      retrying cannot help (a rejected recipient, a broken template)
└── ConfigurationError    settings are missing or contradictory
"""

from __future__ import annotations


class MailpipeError(Exception):
    """Base of every error Mailpipe raises on purpose."""


class InvalidInput(MailpipeError):
    """The input is malformed or breaks a rule; `field` names the culprit when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidAddress(InvalidInput):
    """An email address that is not syntactically valid or cannot receive mail."""


class NotFound(MailpipeError):
    """The document, template or route does not exist."""


class InvalidToken(NotFound):
    """A token that is unknown, expired, tampered with or already used."""


class AlreadyExists(MailpipeError):
    """Create-if-absent found an existing document."""


class AlreadyProcessed(MailpipeError):
    """The event or batch already had its effect; acknowledge and move on."""


class Conflict(MailpipeError):
    """The requested state change is not allowed from the current state."""


class Unauthorized(MailpipeError):
    """A missing, invalid or stale signature or API key; nothing is recorded."""


class RateLimited(MailpipeError):
    """Too many requests from one source; answer 429 with a generic message."""


class TransientError(MailpipeError):
    """A failure that a later retry may not see (timeouts, 429/503, lock contention)."""


class Throttled(TransientError):
    """The provider asked us to slow down; `retry_after` is in seconds when it said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MirrorBehind(TransientError):
    """The warehouse's subscriber mirror lacks `missing` of the `confirmed` subscribers a
    campaign's audience is taken from: their rows are on their way; try again shortly."""

    def __init__(self, missing: int, confirmed: int) -> None:
        super().__init__(f"the subscriber mirror lacks {missing} of {confirmed} confirmed "
                         "subscribers")  # fmt: skip
        self.missing = missing
        self.confirmed = confirmed


class SnapshotUnfinished(TransientError):
    """A campaign's audience snapshot took its time budget for one invocation; its progress is
    saved, and the next invocation goes on from there."""

    def __init__(self, members: int) -> None:
        super().__init__(f"the audience snapshot has {members} members so far; it goes on")
        self.members = members


class PermanentFailure(MailpipeError):
    """Retrying cannot help: a rejected recipient, a broken template, a poison message."""


class ConfigurationError(MailpipeError):
    """Settings are missing or contradictory."""
