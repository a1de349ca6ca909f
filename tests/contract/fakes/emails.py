"""Campaign messages as the real renderer makes them (welcome template, signed tracking and
unsubscribe links, List-Unsubscribe headers), for the mailer tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from shared.adapters.esp.correlation import CAMPAIGN_HEADER
from shared.adapters.local.filesystem_blobs import FilesystemBlobs
from shared.domain.links import Links, local_base_urls
from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.ports import OutgoingEmail
from shared.services.mime import build_message
from shared.services.rendering import Renderer
from shared.services.templating import TemplateCatalog
from shared.topology import REPO_ROOT

SENDER = "Mailpipe News <news@mailpipe.test>"
_CATALOG = TemplateCatalog(FilesystemBlobs(REPO_ROOT / "templates"))
_RENDERER = Renderer(
    Links("test-signing-key", local_base_urls("http://mailpipe.test")), SENDER, "mailpipe.test"
)


def campaign_emails(
    first_names: Sequence[str],
    campaign_id: str = "cmp-1",
    start: int = 0,
    local_part: str = "reader",
    template: str = "welcome",
) -> list[OutgoingEmail]:
    """One message per first name, to <local_part><n>@example.com (n counts from `start`)."""
    request = RenderRequest(
        batch_id=f"{campaign_id}-batch",
        template=template,
        kind=MARKETING,
        audience_at=0.0,
        recipients=[],
        campaign_id=campaign_id,
    )
    compiled = _CATALOG.email(template)
    emails = []
    for n, name in enumerate(first_names, start):
        recipient = Recipient(f"sub{n:05d}", f"{local_part}{n}@example.com", name)
        emails.append(
            with_campaign_header(_RENDERER.render(compiled, request, recipient), campaign_id)
        )
    return emails


def with_campaign_header(email: OutgoingEmail, campaign_id: str) -> OutgoingEmail:
    headers = {**email.headers, CAMPAIGN_HEADER: campaign_id}
    return with_content(email, headers=headers)


def with_content(email: OutgoingEmail, **changes: object) -> OutgoingEmail:
    """`email` changed, with its raw MIME rebuilt to match."""
    changed = replace(email, **changes)  # type: ignore[arg-type]
    raw = build_message(
        sender=changed.sender,
        recipient=changed.recipient,
        subject=changed.subject,
        message_id=changed.message_id,
        html=changed.html,
        text=changed.text,
        headers=changed.headers,
        date=0.0,
    )
    return replace(changed, raw=raw)
