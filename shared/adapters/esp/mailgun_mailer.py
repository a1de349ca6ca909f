"""MailgunMailer: the Mailer port over Mailgun's messages API (form-encoded, basic auth api:key).

Batching: the chunk is split into merge groups (shared/adapters/esp/merge_groups.py): messages
with the same sender and header names, to distinct recipients, whose subject, html and text
are identical once each message's own per-recipient values (found by token alignment) are
replaced by `%recipient.mpN%`. A group of two or more is one batch request to
`POST /v3/<domain>/messages` (up to 1,000 `to`), with `recipient-variables` carrying each
recipient's values, its headers (`h:<Name>: %recipient.mp_h<i>%`, so List-Unsubscribe is per
recipient), its Message-ID and its correlation variables (`v:message_id`, `v:subscriber_id`,
`v:campaign_id`, again through recipient variables). A group of one goes to
`POST /v3/<domain>/messages.mime` with its own raw MIME, byte for byte, plus the same `v:`
variables. Mailgun's click and open tracking are off (links are already Mailpipe's).

Answers: 200 sent (the response id is the provider id); 429 Throttled (Retry-After); 5xx or
no answer TransientError (raised when nothing in the chunk was accepted yet, else the rest
transient); 400 and 413 on a batch say nothing about which recipient is at fault, so the batch
is halved and retried until the culprits stand alone, then they are permanent; other 4xx
permanent for the group; 401/403 (key) and 404 (domain) ConfigurationError.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from urllib.parse import quote

import requests

from shared.adapters.esp.chunk_results import ChunkResults
from shared.adapters.esp.correlation import CAMPAIGN_ID, MESSAGE_ID, SUBSCRIBER_ID, correlation_args
from shared.adapters.esp.http_api import ApiSession, retry_after_s, short_body
from shared.adapters.esp.merge_groups import MergeGroup, MergeRules, merge_groups
from shared.domain.errors import ConfigurationError, Throttled, TransientError
from shared.ports import OutgoingEmail, SendResult
from shared.services.mime import html_and_text

DEFAULT_BASE_URL = "https://api.mailgun.net"
MAX_BATCH = 1000
RULES = MergeRules(
    marker="%recipient",
    placeholder=lambda name: f"%recipient.{name}%",
    max_members=MAX_BATCH,
    max_value_bytes=9000,
)
_CORRELATION = (MESSAGE_ID, SUBSCRIBER_ID, CAMPAIGN_ID)
_NO_TRACKING = [("o:tracking-clicks", "no"), ("o:tracking-opens", "no")]
_SPLIT_ON = frozenset({400, 413})  # "something in this batch is wrong"; nobody named

Form = list[tuple[str, str]]


class MailgunMailer:
    name = "mailgun"

    def __init__(
        self,
        api_key: str,
        domain: str,
        base_url: str = DEFAULT_BASE_URL,
        clock: Callable[[], float] = time.time,
        sign: Callable[[bytes], bytes] = bytes,
    ) -> None:
        def authenticate(session: requests.Session) -> None:
            session.auth = ("api", api_key)

        self._api = ApiSession("Mailgun", base_url, authenticate, "MAILPIPE_MAILGUN_API_KEY")
        self._domain = domain
        self._path = f"/v3/{quote(domain, safe='')}"
        self._clock = clock
        self._sign = sign  # DKIM over the raw MIME (providers.py); batches carry no MIME of ours

    def __repr__(self) -> str:
        return f"MailgunMailer({self._api.base_url}, {self._domain})"

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        parts = [(e.subject, *html_and_text(e)) for e in emails]
        groups = merge_groups(parts, _keys(emails), RULES)
        return ChunkResults(emails).send_groups(groups, self._send_group)

    def close(self) -> None:
        self._api.close()

    def _send_group(self, chunk: ChunkResults, group: MergeGroup) -> None:
        if len(group.members) == 1:
            email = chunk.emails[group.members[0]]
            response = self._api.post(
                f"{self._path}/messages.mime",
                data=mime_form(email),
                files={"message": ("message.eml", self._sign(email.raw), "message/rfc822")},
            )
        else:
            response = self._api.post(
                f"{self._path}/messages", data=batch_form(chunk.emails, group)
            )
        self._record(chunk, group, response)

    def _record(self, chunk: ChunkResults, group: MergeGroup, response: requests.Response) -> None:
        status = response.status_code
        if status == 200:
            chunk.sent(group.members, _queued_id(response))
        elif status == 429:
            retry_after = retry_after_s(response.headers, self._clock())
            raise Throttled(f"Mailgun 429: {short_body(response)}", retry_after)
        elif status >= 500:
            raise TransientError(f"Mailgun {status}: {short_body(response)}")
        elif status == 404:
            raise ConfigurationError(
                f"Mailgun does not know domain {self._domain!r} (MAILPIPE_MAILGUN_DOMAIN, "
                f"MAILPIPE_ESP_BASE_URL for the EU region): {short_body(response)}"
            )
        elif status in _SPLIT_ON and len(group.members) > 1:
            half = len(group.members) // 2
            for part in (slice(None, half), slice(half, None)):
                self._send_group(
                    chunk, replace(group, members=group.members[part], values=group.values[part])
                )
        else:
            chunk.permanent(group.members, f"Mailgun {status}: {short_body(response)}")


def batch_form(emails: Sequence[OutgoingEmail], group: MergeGroup) -> Form:
    """The form for one batch request: shared fields once, per-recipient ones as variables."""
    members = [emails[m] for m in group.members]
    first = members[0]
    header_names = sorted(first.headers)
    subject, html, text = group.templates
    form: Form = [("from", first.sender), ("subject", subject)]
    form += [(name, value) for name, value in (("text", text), ("html", html)) if value]
    form += [("to", e.recipient) for e in members]
    form.append(("h:Message-Id", f"<{RULES.placeholder('mp_' + MESSAGE_ID)}>"))
    form += [(f"h:{n}", RULES.placeholder(f"mp_h{i}")) for i, n in enumerate(header_names)]
    form += [(f"v:{name}", RULES.placeholder(f"mp_{name}")) for name in _CORRELATION]
    form += _NO_TRACKING
    variables = {
        e.recipient: {
            **values,
            **{f"mp_h{i}": e.headers[n] for i, n in enumerate(header_names)},
            **{f"mp_{name}": correlation_args(e).get(name, "") for name in _CORRELATION},
        }
        for e, values in zip(members, group.values, strict=True)
    }
    form.append(("recipient-variables", json.dumps(variables, ensure_ascii=False)))
    return form


def mime_form(email: OutgoingEmail) -> Form:
    """The fields that go with one raw MIME message."""
    form: Form = [("to", email.recipient)]
    form += [(f"v:{name}", value) for name, value in correlation_args(email).items()]
    return form + _NO_TRACKING


def _keys(emails: Sequence[OutgoingEmail]) -> list[object]:
    """What must be equal to merge: sender and header names. Recipient variables are keyed by
    address, so a repeated address goes to another group; header values and correlation ids
    travel as variables, so a message with the marker in them is kept apart."""
    seen: Counter[str] = Counter()
    keys: list[object] = []
    for index, email in enumerate(emails):
        seen[email.recipient] += 1
        fields = [email.sender, *email.headers.values(), *correlation_args(email).values()]
        if any(RULES.marker in f for f in fields):
            keys.append(("alone", index))
        else:
            keys.append((email.sender, tuple(sorted(email.headers)), seen[email.recipient]))
    return keys


def _queued_id(response: requests.Response) -> str:
    try:
        return str(response.json().get("id", "")).strip("<>")
    except (ValueError, AttributeError):
        return ""
