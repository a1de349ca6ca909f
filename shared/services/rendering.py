"""Render: one RenderRequest (a batch) -> personalized MIME messages -> one or more SendBatches.

Per message the work is: render the precompiled templates, rewrite links into signed tracking
links, add the open pixel and the per-recipient List-Unsubscribe headers, assemble the MIME.
A recipient whose data breaks the template is reported and skipped; the batch goes on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jinja2

from shared.domain import events as ev
from shared.domain.errors import PermanentFailure
from shared.domain.events import AnalyticsEvent, mailbox_provider, stable_id, utc_iso
from shared.domain.links import Links
from shared.domain.messages import MARKETING, Recipient, RenderRequest, SendBatch
from shared.ports import OutgoingEmail
from shared.services.mime import build_message
from shared.services.publishing import Outbox
from shared.services.templating import CompiledEmail, TemplateCatalog

log = logging.getLogger(__name__)

_HREF = re.compile(r'(<a\b[^>]*?\bhref=")(https?://[^"]+)(")', re.IGNORECASE)
_BODY_END = re.compile(r"</body>", re.IGNORECASE)
MAX_BATCH_BYTES = 400_000  # compressed; the 2nd-gen event limit is 512 KB


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
        self, compiled: CompiledEmail, request: RenderRequest, recipient: Recipient
    ) -> OutgoingEmail:
        scope = request.campaign_id or request.batch_id
        message_id = self.message_id(scope, recipient.subscriber_id)
        unsubscribe_url = self._links.unsubscribe(recipient.subscriber_id, request.campaign_id)
        context = self._context(request, recipient, unsubscribe_url)
        html = compiled.html.render(context)
        tracking = recipient.tracking
        if request.track_clicks and tracking:
            html = self._track_links(html, message_id, recipient, request.campaign_id)
        if request.track_opens and tracking:
            html = self._add_pixel(html, message_id, recipient, request.campaign_id)
        subject = request.subject or compiled.subject.render(context)
        headers = {}
        if request.kind == MARKETING:
            headers = {
                "List-Unsubscribe": f"<{unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        sender = request.sender or self._sender
        text = compiled.text.render(context)
        raw = build_message(
            sender=sender,
            recipient=recipient.email,
            subject=subject,
            message_id=message_id,
            html=html,
            text=text,
            headers=headers,
        )
        return OutgoingEmail(
            message_id=message_id,
            sender=sender,
            recipient=recipient.email,
            subject=subject,
            html=html,
            text=text,
            headers=headers,
            raw=raw,
            subscriber_id=recipient.subscriber_id,
        )

    def _context(
        self, request: RenderRequest, recipient: Recipient, unsubscribe_url: str
    ) -> dict[str, Any]:
        return {
            **request.context,
            **recipient.variables,
            "first_name": recipient.first_name,
            "email": recipient.email,
            "unsubscribe_url": unsubscribe_url,
            "preferences_url": self._links.preferences(recipient.subscriber_id),
            "campaign_id": request.campaign_id,
            "variant": request.variant,
        }

    def _track_links(
        self, html: str, message_id: str, recipient: Recipient, campaign_id: str | None
    ) -> str:
        def rewrite(match: re.Match[str]) -> str:
            url = match.group(2).replace("&amp;", "&")
            if self._links.is_ours(url):
                return match.group(0)
            tracked = self._links.click(message_id, recipient.subscriber_id, campaign_id, url)
            return f"{match.group(1)}{tracked}{match.group(3)}"

        return _HREF.sub(rewrite, html)

    def _add_pixel(
        self, html: str, message_id: str, recipient: Recipient, campaign_id: str | None
    ) -> str:
        url = self._links.open_pixel(message_id, recipient.subscriber_id, campaign_id)
        pixel = f'<img src="{url}" width="1" height="1" alt="" style="display:block;border:0">'
        replaced, count = _BODY_END.subn(pixel + "</body>", html, count=1)
        return replaced if count else html + pixel


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
        for recipient in request.recipients:
            try:
                emails.append(self._renderer.render(compiled, request, recipient))
            except (jinja2.TemplateError, ValueError) as exc:
                failures.append(self._render_failure(request, recipient, exc))
        self._publish(request, emails)
        if failures:
            self._outbox.analytics(failures)
        return len(emails)

    def _publish(self, request: RenderRequest, emails: list[OutgoingEmail]) -> None:
        batch = SendBatch(
            batch_id=request.batch_id,
            kind=request.kind,
            audience_at=request.audience_at,
            emails=emails,
            campaign_id=request.campaign_id,
            variant=request.variant,
            trigger_id=request.trigger_id,
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
            properties={"error": str(exc)[:300]},
        )


def _split(batch: SendBatch) -> list[bytes]:
    """The batch encoded; halved (with derived batch ids) until each part fits an event."""
    encoded = batch.encode()
    if len(encoded) <= MAX_BATCH_BYTES or len(batch.emails) <= 1:
        if len(encoded) > MAX_BATCH_BYTES:
            raise PermanentFailure(f"one message is larger than {MAX_BATCH_BYTES} bytes")
        return [encoded]
    half = len(batch.emails) // 2
    first = replace(batch, batch_id=f"{batch.batch_id}.a", emails=batch.emails[:half])
    second = replace(batch, batch_id=f"{batch.batch_id}.b", emails=batch.emails[half:])
    return _split(first) + _split(second)
