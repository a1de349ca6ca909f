"""Render: one RenderRequest (a batch) -> personalized MIME messages -> one or more SendBatches.

Per message the work is: render the precompiled templates (whose links already pass through
the tracking filter and whose pixel slot is filled per recipient), add the per-recipient
List-Unsubscribe headers, and assemble the MIME (mime.build_message: 7bit where it can, else
quoted-printable from the template's cached fragment encodings).
A recipient whose data breaks the template (any exception: an undefined variable, `1 // 0` on
an attribute) fails alone: the send batch carries it as `failed` with its reason, so the send
stage records its outcome in the ledger beside everyone else's (and `resend-failed` finds it);
the batch goes on. Only what fails for the whole batch (the template missing or broken, the
store unreachable) raises, so the bus retries the batch and finally dead-letters it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from markupsafe import Markup

from shared.domain import events as ev
from shared.domain.errors import TransientError
from shared.domain.events import AnalyticsEvent, mailbox_provider, stable_id, utc_iso
from shared.domain.links import Links
from shared.domain.messages import MARKETING, Recipient, RenderRequest, SendBatch
from shared.ports import OutgoingEmail
from shared.services.mime import RenderedBody, build_message
from shared.services.publishing import Outbox
from shared.services.templating import (
    LINKS_VARIABLE,
    PIXEL_VARIABLE,
    TRACKER_VARIABLE,
    CompiledEmail,
    TemplateCatalog,
    TestableUndefined,
    subject_template,
)

log = logging.getLogger(__name__)

# What `{{ subject }}` is while the template's <title> is rendered to be the subject.
_NO_SUBJECT = TestableUndefined(
    "the campaign has no subject, so the template's <title> is the subject and cannot use "
    "{{ subject }}: give the campaign one (--subject)",
    name="subject",
)
MAX_BATCH_BYTES = 400_000  # compressed; the 2nd-gen event limit is 512 KB
# A batch is split by its messages' raw size first: unlike the compressed size, it is the same
# on every render of the batch (timestamps have a fixed width), so a redelivered render splits
# into the same parts with the same ids, which the send ledger dedupes by. A campaign's similar
# messages compress 14-36x, so such a part fits the event limit with room to spare; only a part
# that still does not (incompressible content) is halved by its compressed size.
MAX_RAW_BATCH_BYTES = 4_000_000
MAX_REASON = 300  # characters of a failure's reason kept in the ledger and analytics


class Renderer:
    """Personalizes one compiled template for one recipient (no I/O)."""

    def __init__(self, links: Links, sender: str, sender_domain: str) -> None:
        self._links = links
        self._sender = sender
        self._domain = sender_domain

    def message_id(self, scope: str, subscriber_id: str) -> str:
        """Deterministic per (campaign or batch, subscriber): a resend carries the same id."""
        return f"{stable_id(scope, subscriber_id)}@{self._domain}"

    def render(
        self,
        compiled: CompiledEmail,
        request: RenderRequest,
        recipient: Recipient,
        now: float | None = None,
        keep_bodies: bool = True,
        subject_prefix: str = "",
    ) -> OutgoingEmail:
        """The message; without `keep_bodies` only its raw MIME carries the HTML and text
        (a send batch sends nothing else, and a batch of 250 copies would hold them twice).
        `subject_prefix` goes before the rendered subject (test sends: "[TEST] ")."""
        sent_at = time.time() if now is None else now
        message_id = self.message_id(
            request.campaign_id or request.batch_id, recipient.subscriber_id
        )
        context = self.template_context(compiled, request, recipient)
        unsubscribe_url = context["unsubscribe_url"]
        context.update(self._tracking(compiled, request, recipient, message_id, sent_at))
        html_parts = list(compiled.html.generate(context))
        text_parts = list(compiled.text.generate(context))
        subject = subject_prefix + context["subject"]
        headers = {}
        if request.kind == MARKETING:
            headers = {
                "List-Unsubscribe": f"<{unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        sender = request.sender or self._sender
        html, text = "".join(html_parts), "".join(text_parts)
        raw = build_message(
            sender=sender,
            recipient=recipient.email,
            subject=subject,
            message_id=message_id,
            html=RenderedBody(html, html_parts, compiled.html_encoder),
            text=RenderedBody(text, text_parts, compiled.text_encoder),
            headers=headers,
            date=sent_at,
        )
        return OutgoingEmail(
            message_id=message_id,
            sender=sender,
            recipient=recipient.email,
            subject=subject,
            html=html if keep_bodies else "",
            text=text if keep_bodies else "",
            headers=headers,
            raw=raw,
            subscriber_id=recipient.subscriber_id,
            campaign_id=request.campaign_id,
        )

    def template_context(
        self, compiled: CompiledEmail, request: RenderRequest, recipient: Recipient
    ) -> dict[str, Any]:
        """Every name the template sees (README, "Template variables"). Later wins: the
        subscriber's attributes, then the campaign's variables, then the recipient's own
        variables (`attributes`; a trigger's event properties), then the built-ins."""
        attributes = recipient.variables.get("attributes")
        context = {
            **(attributes if type(attributes) is dict else {}),
            **request.context,
            **recipient.variables,
            "first_name": recipient.first_name,
            "email": recipient.email,
            "unsubscribe_url": self._links.unsubscribe(
                recipient.subscriber_id, request.campaign_id
            ),
            "preferences_url": self._links.preferences(recipient.subscriber_id),
            "campaign_id": request.campaign_id,
            "variant": request.variant,
        }
        # The subject is rendered with the same names, and is then one of them.
        if request.subject is None:
            context["subject"] = _NO_SUBJECT
            context["subject"] = compiled.subject.render(context)
        elif "{" in request.subject:
            context["subject"] = subject_template(request.subject).render(context)
        else:
            context["subject"] = request.subject
        return context

    def _tracking(
        self,
        compiled: CompiledEmail,
        request: RenderRequest,
        recipient: Recipient,
        message_id: str,
        sent_at: float,
    ) -> dict[str, Any]:
        """What the instrumented template calls for links and the pixel; tracking is off when
        the campaign or the subscriber said no."""
        if not recipient.tracking or not (request.track_clicks or request.track_opens):
            return {TRACKER_VARIABLE: None, LINKS_VARIABLE: compiled.escaped_links,
                    PIXEL_VARIABLE: ""}  # fmt: skip
        message = self._links.message_tracker(
            message_id, recipient.subscriber_id, request.campaign_id, sent_at
        )
        tracker = message.click if request.track_clicks else None
        links: Sequence[Markup] = compiled.escaped_links
        if tracker:
            links = [Markup.escape(tracker(url) or url) for url in compiled.links]
        pixel = ""
        if request.track_opens:
            pixel = Markup(
                f'<img src="{message.open_pixel()}" width="1" height="1" alt="" '
                'style="display:block;border:0">'
            )
        return {TRACKER_VARIABLE: tracker, LINKS_VARIABLE: links, PIXEL_VARIABLE: pixel}


class RenderService:
    def __init__(
        self,
        catalog: TemplateCatalog,
        renderer: Renderer,
        outbox: Outbox,
        send_topic: str,
        clock: Callable[[], float],
    ) -> None:
        self._catalog = catalog
        self._renderer = renderer
        self._outbox = outbox
        self._send_topic = send_topic
        self._clock = clock

    def handle(self, request: RenderRequest) -> int:
        """Render and publish the batch; returns how many messages were rendered."""
        compiled = self._catalog.email(request.template)  # NotFound/PermanentFailure: retry, DLQ
        emails: list[OutgoingEmail] = []
        failures: list[AnalyticsEvent] = []
        failed: dict[str, str] = {}
        now = self._clock()  # one send time for the batch's Date headers and tracking links
        for recipient in request.recipients:
            try:
                emails.append(self._renderer.render(compiled, request, recipient, now, False))
            except TransientError:
                raise  # not this recipient's doing (a store, say): the batch is retried
            except Exception as exc:  # this recipient's data: it fails alone (module docstring)
                failed[recipient.subscriber_id] = render_error(exc)
                failures.append(self._render_failure(request, recipient, exc))
        self._publish(request, emails, failed)
        if failures:
            self._outbox.analytics(failures)
        return len(emails)

    def _publish(
        self, request: RenderRequest, emails: list[OutgoingEmail], failed: dict[str, str]
    ) -> None:
        batch = SendBatch(
            batch_id=request.batch_id,
            kind=request.kind,
            audience_at=request.audience_at,
            emails=emails,
            campaign_id=request.campaign_id,
            variant=request.variant,
            trigger_id=request.trigger_id,
            failed=failed,
        )
        self._outbox.publish_bytes(self._send_topic, list(_split(batch)))

    def _render_failure(
        self, request: RenderRequest, recipient: Recipient, exc: Exception
    ) -> AnalyticsEvent:
        log.warning(
            "recipient skipped: template %s failed for this recipient: %s",
            request.template,
            exc,
            extra={"batch_id": request.batch_id, "campaign_id": request.campaign_id},
        )
        return AnalyticsEvent(
            event_id=stable_id(ev.SEND_FAILED, request.batch_id, recipient.subscriber_id),
            event_type=ev.SEND_FAILED,
            occurred_at=utc_iso(self._clock()),
            subscriber_id=recipient.subscriber_id,
            campaign_id=request.campaign_id,
            variant=request.variant,
            trigger_id=request.trigger_id,
            mailbox_provider=mailbox_provider(recipient.email),
            reason="render_error",
            properties={"error": render_error(exc)},
        )


def render_error(exc: BaseException) -> str:
    """The reason a recipient failed to render, as the ledger and analytics keep it."""
    return f"render_error: {type(exc).__name__}: {exc}"[:MAX_REASON]


def _split(batch: SendBatch) -> list[bytes]:
    """The batch encoded; halved (with derived batch ids) until each part fits an event."""
    if len(batch.emails) > 1 and sum(len(e.raw) for e in batch.emails) > MAX_RAW_BATCH_BYTES:
        return _halves(batch)
    encoded = batch.encode()
    if len(encoded) <= MAX_BATCH_BYTES:
        return [encoded]
    if len(batch.emails) <= 1:  # that recipient's message alone is too large: it fails alone
        reason = f"render_error: the message is larger than {MAX_BATCH_BYTES} bytes compressed"
        failed = {**batch.failed, **{e.subscriber_id: reason for e in batch.emails}}
        return [replace(batch, emails=[], failed=failed).encode()]
    return _halves(batch)


def _halves(batch: SendBatch) -> list[bytes]:
    half = len(batch.emails) // 2
    first = replace(batch, batch_id=f"{batch.batch_id}.a", emails=batch.emails[:half])
    second = replace(batch, batch_id=f"{batch.batch_id}.b", emails=batch.emails[half:], failed={})
    return _split(first) + _split(second)
