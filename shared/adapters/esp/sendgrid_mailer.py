"""SendGridMailer: the Mailer port over SendGrid's v3 Mail Send API (`POST /v3/mail/send`).

Batching: the chunk is split into merge groups (shared/adapters/esp/merge_groups.py): messages
with the same sender whose html and text are identical once each message's own per-recipient
values (found by token alignment: names, addresses, signed tracking and unsubscribe links)
are replaced by `[%mpN%]` placeholders. One request per group, up to 1,000 personalizations;
each personalization fills the placeholders through `substitutions` and carries its own
subject, its message's headers (List-Unsubscribe ... and Message-ID, so SendGrid keeps our
deterministic id) and `custom_args` (message_id, subscriber_id, campaign_id) for the webhooks.
A message nothing else matches is a group of one, sent as it is. SendGrid's own click and
open tracking are switched off: the links already point at Mailpipe's signed tracking URLs.

Answers: 202 sent (X-Message-Id is the provider id); 429 Throttled (Retry-After, else
X-RateLimit-Reset); 5xx or no answer TransientError (raised when nothing in the chunk was
accepted yet, else the rest transient); 400: errors naming `personalizations.N` are permanent
for those recipients and the others are posted again once, errors naming none are permanent
for the group; other 4xx permanent for the group; 401/403 ConfigurationError.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from email.utils import parseaddr
from typing import Any

import requests

from shared.adapters.esp.chunk_results import ChunkResults
from shared.adapters.esp.correlation import correlation_args
from shared.adapters.esp.http_api import ApiSession, retry_after_s, short_body
from shared.adapters.esp.merge_groups import MergeGroup, MergeRules, merge_groups
from shared.domain.errors import Throttled, TransientError
from shared.ports import OutgoingEmail, SendResult
from shared.services.mime import html_and_text

DEFAULT_BASE_URL = "https://api.sendgrid.com"
SEND_PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
RULES = MergeRules(
    marker="[%mp",
    placeholder=lambda name: f"[%{name}%]",
    max_members=MAX_PERSONALIZATIONS,
    max_value_bytes=9000,  # SendGrid allows 10,000 bytes of substitutions per personalization
)
_PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)")
_NO_TRACKING = {
    "click_tracking": {"enable": False, "enable_text": False},
    "open_tracking": {"enable": False},
}


class SendGridMailer:
    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        def authenticate(session: requests.Session) -> None:
            session.headers["Authorization"] = f"Bearer {api_key}"

        self._api = ApiSession("SendGrid", base_url, authenticate, "MAILPIPE_SENDGRID_API_KEY")
        self._clock = clock

    def __repr__(self) -> str:
        return f"SendGridMailer({self._api.base_url})"

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        groups = merge_groups([html_and_text(e) for e in emails], _keys(emails), RULES)
        return ChunkResults(emails).send_groups(groups, self._send_group)

    def close(self) -> None:
        self._api.close()

    def _send_group(self, chunk: ChunkResults, group: MergeGroup, retry_rest: bool = True) -> None:
        response = self._api.post(SEND_PATH, json=payload(chunk.emails, group))
        status = response.status_code
        if status in (200, 202):
            chunk.sent(group.members, response.headers.get("X-Message-Id", ""))
        elif status == 429:
            retry_after = retry_after_s(response.headers, self._clock())
            raise Throttled(f"SendGrid 429: {short_body(response)}", retry_after)
        elif status >= 500:
            raise TransientError(f"SendGrid {status}: {short_body(response)}")
        elif status == 400:
            self._rejected(chunk, group, response, retry_rest)
        else:
            chunk.permanent(group.members, f"SendGrid {status}: {short_body(response)}")

    def _rejected(
        self, chunk: ChunkResults, group: MergeGroup, response: requests.Response, retry_rest: bool
    ) -> None:
        """Permanent for the personalizations the errors name; the others are posted again
        once (then left transient). Errors that name no personalization concern everyone."""
        by_position = _errors_by_personalization(response)
        if not by_position:
            chunk.permanent(group.members, f"SendGrid 400: {short_body(response)}")
            return
        for k, messages in by_position.items():
            if k < len(group.members):
                chunk.permanent([group.members[k]], f"SendGrid 400: {'; '.join(messages)}")
        keep = [k for k in range(len(group.members)) if k not in by_position]
        if not keep:
            return
        if not retry_rest:
            others = [group.members[k] for k in keep]
            chunk.transient(others, "SendGrid 400 for other recipients of the same request")
            return
        rest = replace(
            group, members=[group.members[k] for k in keep], values=[group.values[k] for k in keep]
        )
        self._send_group(chunk, rest, retry_rest=False)


def payload(emails: Sequence[OutgoingEmail], group: MergeGroup) -> dict[str, Any]:
    """The v3 Mail Send body for one merge group."""
    first = emails[group.members[0]]
    html, text = group.templates
    content = [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}]
    return {
        "from": _address(first.sender),
        "subject": first.subject,
        "content": [c for c in content if c["value"]],
        "personalizations": [
            _personalization(emails[m], values)
            for m, values in zip(group.members, group.values, strict=True)
        ],
        "tracking_settings": _NO_TRACKING,
    }


def _personalization(email: OutgoingEmail, values: dict[str, str]) -> dict[str, Any]:
    personalization: dict[str, Any] = {
        "to": [_address(email.recipient)],
        "subject": email.subject,
        "headers": {**email.headers, "Message-ID": f"<{email.message_id}>"},
        "custom_args": correlation_args(email),
    }
    if values:
        personalization["substitutions"] = {RULES.placeholder(k): v for k, v in values.items()}
    return personalization


def _address(value: str) -> dict[str, str]:
    name, address = parseaddr(value)
    return {"email": address, "name": name} if name else {"email": address}


def _keys(emails: Sequence[OutgoingEmail]) -> list[object]:
    """What must be equal to merge: the sender. SendGrid may substitute in subjects and headers
    too, so a message with the placeholder marker there is kept apart (it has its own key)."""
    keys: list[object] = []
    for index, email in enumerate(emails):
        fields = [email.subject, *email.headers.values()]
        keys.append(("alone", index) if any(RULES.marker in f for f in fields) else email.sender)
    return keys


def _errors_by_personalization(response: requests.Response) -> dict[int, list[str]]:
    """Error messages per personalization index; {} when the errors name no personalization."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return {}
    found: dict[int, list[str]] = {}
    for error in errors:
        if not isinstance(error, dict):
            continue
        match = _PERSONALIZATION_FIELD.match(str(error.get("field") or ""))
        if match is None:
            return {}  # an error about the request as a whole: every recipient shares it
        found.setdefault(int(match.group(1)), []).append(str(error.get("message", "")))
    return found
