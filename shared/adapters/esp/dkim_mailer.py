"""DkimSigningMailer: signs each message's raw MIME, then hands the chunk to the real mailer.

Why here, in the send stage, just before the provider: these are the final bytes (the send
ledger has dropped what was already sent or suppressed; an SMTP mailer may change the envelope,
never the message), so nothing is signed that is not sent and nothing changes after signing.
Signing at render instead would put a per-message signature (incompressible, ~100-350 bytes)
into every send batch, whose similar messages otherwise compress 14-36x, and would put the
key in one more function. A redelivered batch is signed again (a new t=), which is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from shared.adapters.esp.dkim_signer import DkimSigner
from shared.ports import Mailer, OutgoingEmail, SendResult


class DkimSigningMailer:
    def __init__(self, inner: Mailer, signer: DkimSigner) -> None:
        self._inner = inner
        self._signer = signer
        self.name = inner.name

    def __repr__(self) -> str:
        return f"DkimSigningMailer({self._inner!r}, {self._signer!r})"

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        signed = [replace(email, raw=self._signer.sign(email.raw)) for email in emails]
        return self._inner.send(signed)

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()
