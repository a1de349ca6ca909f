"""The links Mailpipe puts in mail and pages, each carrying a signed token.

`base_urls` maps a route (confirm, unsubscribe, preferences, tracking) to its public base URL:
locally all routes share one host under path prefixes; on GCP each function has its own URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from shared.domain import tokens
from shared.topology import FUNCTIONS

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CLICK = "click"
OPEN = "open"
# A tracked link's token is split (tokens.verify_split): the message's part and the URL's part
# carry a MAC each, so a message with twenty links costs one MAC, not twenty.
CLICK_MESSAGE = "click-message"
CLICK_URL = "click-url"
_URL_KEY = b',"u":'


@dataclass(frozen=True)
class Links:
    signing_key: str
    base_urls: Mapping[str, str]
    _url_parts: dict[str, tuple[str, str]] = field(default_factory=dict, compare=False)

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
        """url -> its tracked URL for one message (a token `verify_click` accepts)."""
        tracker = self.message_tracker(message_id, subscriber_id, campaign_id, sent_at)
        return tracker.sign_click

    def message_tracker(
        self, message_id: str, subscriber_id: str, campaign_id: str | None, sent_at: float
    ) -> MessageTracker:
        """The click and open links of one message."""
        return MessageTracker(self, _message_json(message_id, subscriber_id, campaign_id, sent_at))

    def open_pixel(
        self, message_id: str, subscriber_id: str, campaign_id: str | None, sent_at: float = 0
    ) -> str:
        return self.open_pixel_url(_message_json(message_id, subscriber_id, campaign_id, sent_at))

    def open_pixel_url(self, message_json: str) -> str:
        """The pixel URL for a message's serialized fixed payload (see `_message_json`)."""
        token = tokens.sign_json(self.signing_key, OPEN, message_json.encode())
        return self._url("tracking", f"/o/{token}")

    def is_ours(self, url: str) -> bool:
        return url.startswith(tuple(self.base_urls.values()))

    def url_part(self, url: str) -> tuple[str, str]:
        """(base64 of a click payload's tail for `url`, the tail's MAC), remembered per URL: a
        campaign tracks the same links in every message."""
        part = self._url_parts.get(url)
        if part is not None:
            return part
        return self._signed_url_part(url) if self.is_ours(url) else self._remember(url)

    def tracked_url_part(self, url: str) -> tuple[str, str] | None:
        """`url_part`, or None for a link to Mailpipe itself (unsubscribe, preferences): those
        are personalized, so they are never remembered."""
        part = self._url_parts.get(url)
        if part is not None:
            return part
        return None if self.is_ours(url) else self._remember(url)

    def _remember(self, url: str) -> tuple[str, str]:
        if len(self._url_parts) >= _URL_PART_CACHE_LIMIT:
            self._url_parts.clear()  # personalized URLs must not grow it forever
        part = self._url_parts[url] = self._signed_url_part(url)
        return part

    def _signed_url_part(self, url: str) -> tuple[str, str]:
        tail = (json.dumps(url) + "}").encode()
        key = tokens.mac_key(self.signing_key)
        return tokens.b64(tail), tokens.split_mac_b64(key, CLICK_URL, tail)


_URL_PART_CACHE_LIMIT = 1_000  # a newsletter's links are dozens; more are personalized


def verify_click(signing_key: str, token: str) -> Any:
    """The payload of a genuine click token, split (MessageTracker) or whole (`Links.click`);
    InvalidToken for anything else."""
    if len(token.rpartition(".")[2]) > tokens.MAC_B64_CHARS:
        return tokens.verify_split(signing_key, (CLICK_MESSAGE, CLICK_URL), _URL_KEY, token)
    return tokens.verify(signing_key, CLICK, token)


class MessageTracker:
    """Click and open links for one message. A newsletter has a dozen links or more, so a link
    costs no MAC of its own: the payload's fixed part is serialized, base64-encoded and signed
    once per message (padded with JSON whitespace to a multiple of 3 bytes, so its base64 can
    be concatenated with the URL's), and each URL's encoded part and MAC are remembered across
    messages (a split token, see `tokens.verify_split`)."""

    def __init__(self, links: Links, fixed_json: str) -> None:
        self._links = links
        self._fixed_json = fixed_json
        prefix = fixed_json[:-1] + _URL_KEY.decode()
        prefix_bytes = (prefix + " " * (-len(prefix.encode()) % 3)).encode()
        self._head = links._url("tracking", "/c/") + tokens.b64(prefix_bytes)
        key = tokens.mac_key(links.signing_key)
        self._mac = tokens.split_mac_b64(key, CLICK_MESSAGE, prefix_bytes)

    def click(self, url: str) -> str | None:
        """The tracked URL, or None for a link to Mailpipe itself (unsubscribe, preferences)."""
        part = self._links.tracked_url_part(url)
        return None if part is None else self._link(*part)

    def sign_click(self, url: str) -> str:
        """The tracked URL, whoever the link is to."""
        return self._link(*self._links.url_part(url))

    def _link(self, encoded_url: str, url_mac: str) -> str:
        return f"{self._head}{encoded_url}.{self._mac}{url_mac}"

    def open_pixel(self) -> str:
        return self._links.open_pixel_url(self._fixed_json)


def _message_json(
    message_id: str, subscriber_id: str, campaign_id: str | None, sent_at: float
) -> str:
    """What a message's click and open tokens carry besides a URL, as compact JSON."""
    fixed = {"m": message_id, "s": subscriber_id, "c": campaign_id, "t": int(sent_at)}
    return json.dumps(fixed, separators=(",", ":"))


def local_base_urls(base_url: str) -> dict[str, str]:
    """Every HTTP function's route under one host, as `make run` serves them."""
    return {f.name: base_url.rstrip("/") + f.route for f in FUNCTIONS if f.route}
