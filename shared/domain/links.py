"""The links Mailpipe puts in mail and pages, each carrying a signed token.

`base_urls` maps a route (confirm, unsubscribe, preferences, tracking) to its public base URL:
locally all routes share one host under path prefixes; on GCP each function has its own URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
    _url_parts: dict[str, tuple[str, bytes]] = field(default_factory=dict, compare=False)

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

    def click_tracker(
        self, message_id: str, subscriber_id: str, campaign_id: str | None, sent_at: float
    ) -> Callable[[str], str]:
        """url -> its tracked URL for one message (a token `tokens.verify` accepts for CLICK).

        A newsletter has a dozen links or more, so the work per link is one HMAC: the payload's
        fixed part is serialized and base64-encoded once per message (padded with JSON
        whitespace to a multiple of 3 bytes, so its base64 can be concatenated with the
        URL's), and each URL's encoded part is cached across messages."""
        fixed = {"m": message_id, "s": subscriber_id, "c": campaign_id, "t": int(sent_at)}
        prefix = json.dumps(fixed, separators=(",", ":"))[:-1] + ',"u":'
        prefix_bytes = (prefix + " " * (-len(prefix.encode()) % 3)).encode()
        head = self._url("tracking", "/c/") + tokens.b64(prefix_bytes)
        mac_input = tokens.mac_input(CLICK, prefix_bytes)
        key = tokens.mac_key(self.signing_key)
        url_parts = self._url_parts

        def track(url: str) -> str:
            part = url_parts.get(url)
            if part is None:
                part = _encode_url_part(url_parts, url)
            return f"{head}{part[0]}.{tokens.b64(tokens.mac_bytes(key, mac_input + part[1]))}"

        return track

    def open_pixel(
        self, message_id: str, subscriber_id: str, campaign_id: str | None, sent_at: float = 0
    ) -> str:
        payload = {"m": message_id, "s": subscriber_id, "c": campaign_id, "t": int(sent_at)}
        return self._url("tracking", f"/o/{tokens.sign(self.signing_key, OPEN, payload)}")

    def is_ours(self, url: str) -> bool:
        return url.startswith(tuple(self.base_urls.values()))


_URL_PART_CACHE_LIMIT = 10_000


def _encode_url_part(cache: dict[str, tuple[str, bytes]], url: str) -> tuple[str, bytes]:
    """(base64 of the payload's tail for `url`, the tail's bytes), remembered per URL."""
    if len(cache) >= _URL_PART_CACHE_LIMIT:
        cache.clear()  # personalized URLs must not grow it forever
    tail = (json.dumps(url) + "}").encode()
    part = cache[url] = (tokens.b64(tail), tail)
    return part


def local_base_urls(base_url: str) -> dict[str, str]:
    """Every HTTP function's route under one host, as `make run` serves them."""
    return {f.name: base_url.rstrip("/") + f.route for f in FUNCTIONS if f.route}
