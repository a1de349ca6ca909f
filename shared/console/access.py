"""Who may use the console, and as what: `admin` acts, `viewer` only reads the dashboards.

Locally a person signs in with the admin key (MAILPIPE_ADMIN_API_KEY), or with a key the runner
generates and prints at start when none is set; MAILPIPE_CONSOLE_VIEWER_KEY signs in read-only.
In GCP Identity-Aware Proxy may stand in front instead (shared/console/iap.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from shared.settings import Settings

ADMIN, VIEWER = "admin", "viewer"


@dataclass(frozen=True)
class ConsoleAccess:
    admin_key: str = field(default="", repr=False)
    viewer_key: str = field(default="", repr=False)
    generated: bool = False  # the admin key was made up at start (no MAILPIPE_ADMIN_API_KEY)
    iap_audience: str = ""
    admins: tuple[str, ...] = ()
    iap_certs_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, generate: bool = False) -> ConsoleAccess:
        """With `generate` (the local runner), a missing admin key is made up for this run."""
        key, generated = settings.admin_api_key, False
        if not key and generate:
            key, generated = secrets.token_urlsafe(18), True
        return cls(key, settings.console_viewer_key, generated, settings.console_iap_audience,
                   tuple(a.lower() for a in settings.console_admins),
                   settings.console_iap_certs_url)  # fmt: skip

    @property
    def enabled(self) -> bool:
        return bool(self.admin_key or self.viewer_key or self.iap_audience)

    def role_for_key(self, key: str) -> str | None:
        """The role a typed key signs in as (compared in constant time), or None."""
        given = key.strip().encode()
        for role, expected in ((ADMIN, self.admin_key), (VIEWER, self.viewer_key)):
            if expected and hmac.compare_digest(given, expected.encode()):
                return role
        return None

    def role_for_identity(self, email: str) -> str:
        """An identity IAP vouched for: an admin when listed, otherwise a reader."""
        return ADMIN if email.lower() in self.admins else VIEWER

    def fingerprint(self, role: str) -> str:
        """Stored in the session: a session signed in with a key that has since changed ends."""
        key = self.admin_key if role == ADMIN else self.viewer_key
        return hashlib.sha256(f"{role}:{key}".encode()).hexdigest()[:16]
