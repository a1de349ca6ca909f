"""Render benchmark: complete personalized MIME messages per second on one core, beside the
same template's bare Jinja2 render (the ceiling), a naive Jinja2 + EmailMessage baseline, and
render + DKIM signing (RSA-2048 and Ed25519, as the send stage signs: DkimSigner), measured in
the same run, interleaved, best of several rounds."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2

from shared.adapters.esp.dkim_signer import DkimSigner, generate_key
from shared.adapters.local.filesystem_blobs import FilesystemBlobs
from shared.domain.links import Links, local_base_urls
from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.services.rendering import Renderer
from shared.services.templating import TemplateCatalog

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "newsletter"
_HREF = re.compile(r'(<a\b[^>]*?\bhref=")(https?://[^"]+)(")')


def recipients(n: int) -> list[Recipient]:
    picks = [{"url": f"https://shop.example.com/p/{i}", "title": f"Pick {i}"} for i in range(3)]
    return [
        Recipient(
            f"s{i:08d}",
            f"reader{i}@example.com",
            f"Reader{i}",
            {
                "city": "Berlin",
                "plan": "pro",
                "manager": "Kim",
                "reading_minutes": 4,
                "recommendations": picks,
            },
        )
        for i in range(n)
    ]


class RenderBench:
    def __init__(self, n: int = 2000) -> None:
        self.catalog = TemplateCatalog(FilesystemBlobs(TEMPLATES))
        self.compiled = self.catalog.email(TEMPLATE)
        self.links = Links("bench-signing-key-" * 2, local_base_urls("https://mail.example.com"))
        self.renderer = Renderer(self.links, "News <news@example.com>", "example.com")
        self.recipients = recipients(n)
        self.request = RenderRequest(
            "bench", TEMPLATE, MARKETING, time.time(), self.recipients, campaign_id="bench"
        )
        bare = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
        self.bare = bare.get_template(f"email/{TEMPLATE}.html")
        self.signers = {
            kind: DkimSigner(generate_key(kind)[1], "example.com", "bench")
            for kind in ("rsa", "ed25519")
        }

    def _context(self, recipient: Recipient) -> dict[str, Any]:
        links = {"unsubscribe_url": "https://mail.example.com/u",
                 "preferences_url": "https://mail.example.com/p"}  # fmt: skip
        return {**recipient.variables, **links, "first_name": recipient.first_name,
                "email": recipient.email, "campaign_id": "bench"}  # fmt: skip

    def mailpipe(self) -> int:
        for recipient in self.recipients:
            self.renderer.render(self.compiled, self.request, recipient)
        return len(self.recipients)

    def signed_rsa(self) -> int:
        return self._render_and_sign(self.signers["rsa"])

    def signed_ed25519(self) -> int:
        return self._render_and_sign(self.signers["ed25519"])

    def _render_and_sign(self, signer: DkimSigner) -> int:
        for recipient in self.recipients:
            signer.sign(self.renderer.render(self.compiled, self.request, recipient).raw)
        return len(self.recipients)

    def bare_jinja(self) -> int:
        for recipient in self.recipients:
            self.bare.render(self._context(recipient))
        return len(self.recipients)

    def naive(self) -> int:
        """What straightforward code does: render, sign each link, EmailMessage, as_bytes."""
        text_template = self.compiled.text
        for recipient in self.recipients:
            context = self._context(recipient)
            html = _tracked(self.bare.render(context),
                            self.links.click_tracker(recipient.email, recipient.subscriber_id,
                                                     "b", 0))  # fmt: skip
            message = EmailMessage()
            message["From"] = "News <news@example.com>"
            message["To"] = recipient.email
            message["Subject"] = f"{recipient.first_name}, your weekly digest is here"
            message["List-Unsubscribe"] = "<https://mail.example.com/u>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            message.set_content(text_template.render(context))
            message.add_alternative(html, subtype="html")
            message.as_bytes()
        return len(self.recipients)

    def sample_sizes(self) -> dict[str, Any]:
        email = self.renderer.render(self.compiled, self.request, self.recipients[0])
        parts = message_from_bytes(email.raw, policy=policy.default).iter_parts()
        encodings = {p.get_content_type(): p["Content-Transfer-Encoding"] for p in parts}
        return {"html_bytes": len(email.html.encode()), "mime_bytes": len(email.raw),
                "tracked_links": email.html.count("/t/c/"),
                "transfer_encodings": encodings}  # fmt: skip


def _tracked(html: str, track: Callable[[str], str]) -> str:
    """What naive code does for click tracking: a regex pass over every rendered message."""
    return _HREF.sub(lambda m: m.group(1) + track(m.group(2)) + m.group(3), html)


def _cost_ms(with_signing: float, render_alone: float) -> float:
    """What signing adds per message, in milliseconds."""
    return round(1000 * (1 / with_signing - 1 / render_alone), 3)


def best_rate(fn: Callable[[], int], rounds: int) -> float:
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        count = fn()
        rates.append(count / (time.perf_counter() - started))
    return max(rates)


def run(n: int = 2000, rounds: int = 5) -> dict[str, Any]:
    bench = RenderBench(n)
    bench.mailpipe()  # warm caches (compiled template, encoded fragments, URL parts)
    rates: dict[str, list[float]] = {
        "mailpipe": [], "bare_jinja": [], "naive": [], "signed_rsa": [], "signed_ed25519": []
    }  # fmt: skip
    for _ in range(rounds):  # interleaved, so machine noise hits all three alike
        for name in rates:
            rates[name].append(best_rate(getattr(bench, name), 1))
    best = {name: max(values) for name, values in rates.items()}
    return {
        "messages_per_s": round(best["mailpipe"]),
        "bare_jinja_per_s": round(best["bare_jinja"]),
        "naive_per_s": round(best["naive"]),
        "vs_naive": round(best["mailpipe"] / best["naive"], 2),
        "of_ceiling": round(best["mailpipe"] / best["bare_jinja"], 2),
        "render_sign_rsa_per_s": round(best["signed_rsa"]),
        "render_sign_ed25519_per_s": round(best["signed_ed25519"]),
        "sign_rsa_ms": _cost_ms(best["signed_rsa"], best["mailpipe"]),
        "sign_ed25519_ms": _cost_ms(best["signed_ed25519"], best["mailpipe"]),
        "messages_per_round": n,
        "rounds": rounds,
        **bench.sample_sizes(),
    }
