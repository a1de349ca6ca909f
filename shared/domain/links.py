"""The links Mailpipe puts in mail and pages, each carrying a signed token.

`base_urls` maps a route (confirm, unsubscribe, preferences, tracking) to its public base URL:
locally all routes share one host under path prefixes; on GCP each function has its own URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from shared.domain import tokens
from shared.topology import FUNCTIONS

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CLICK = "click"
OPEN = "open"


@dataclass(frozen=True)
class Links:
    signing_key: str
    base_urls: Mapping[str, str]

    def _url(self, route: str, path: str) -> str:
        return f"{self.base_urls[route].rstrip('/')}{path}"

    def confirm(self, token: str) -> str:
        return self._url("confirm", f"/?token={quote(token)}")

    def unsubscribe_token(self, subscriber_id: str, campaign_id: str | None) -> str:
        return tokens.sign(self.signing_key, UNSUBSCRIBE, {"s": subscriber_id, "c": campaign_id})

    def unsubscribe(self, subscriber_id: str, campaign_id: str | None = None) -> str:
        token = self.unsubscribe_token(subscriber_id, campaign_id)
        return self._url("unsubscribe", f"/?token={token}")

    def preferences(self, subscriber_id: str) -> str:
        token = tokens.sign(self.signing_key, PREFERENCES, {"s": subscriber_id})
        return self._url("preferences", f"/?token={token}")

    def click(self, message_id: str, subscriber_id: str, campaign_id: str | None, url: str) -> str:
        payload = {"m": message_id, "s": subscriber_id, "c": campaign_id, "u": url}
        return self._url("tracking", f"/c/{tokens.sign(self.signing_key, CLICK, payload)}")

    def open_pixel(self, message_id: str, subscriber_id: str, campaign_id: str | None) -> str:
        payload = {"m": message_id, "s": subscriber_id, "c": campaign_id}
        return self._url("tracking", f"/o/{tokens.sign(self.signing_key, OPEN, payload)}")

    def is_ours(self, url: str) -> bool:
        return any(url.startswith(base) for base in self.base_urls.values())


def local_base_urls(base_url: str) -> dict[str, str]:
    """Every HTTP function's route under one host, as `make run` serves them."""
    return {f.name: base_url.rstrip("/") + f.route for f in FUNCTIONS if f.route}
