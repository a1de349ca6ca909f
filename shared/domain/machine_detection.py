"""Human or machine: classify opens and clicks so reports can leave machine events out.

Signals, strongest first (the verdict names the one that fired):

apple_mpp      Apple Mail Privacy Protection fetches every image (so the pixel) through Apple's
               proxies when mail arrives, opened or not. Its requests carry the bare user agent
               "Mozilla/5.0" (no platform or engine tokens, which no real browser or mail client
               sends) or come from Apple's own network 17.0.0.0/8 (ARIN NET-17-0-0-0-0,
               registered to Apple Inc.). Apple's iCloud Private Relay egress ranges
               (https://mask-api.icloud.com/egress-ip-ranges.csv) are NOT used: people browse
               through them too. Gmail's and Yahoo's image proxies (GoogleImageProxy,
               YahooMailProxy) fetch when a person opens the mail, so they stay human.
bot_user_agent Crawlers, HTTP libraries, headless browsers and the link scanners of mail
               security gateways that name themselves (list below; extend it as new ones show
               up in the warehouse's user_agent property). An empty user agent is a machine.
proxy_ip       An operator-maintained list of scanner/proxy networks (MAILPIPE_MACHINE_IP_RANGES).
fast_click     A click within `click_within_s` (default 10 s) of the send: security scanners
               follow links as the message is delivered; people need longer to open, read and
               click. The send time travels in the signed link (`t`, set at render time, which
               is at or before the send, so the rule errs towards "human").
link_sweep     A scanner follows every link of a message within seconds. LinkSweep remembers, per
               message, which links were clicked in the last `sweep_window_s` (in process: no
               database write per click); when all the message's links (`n` in the token, at
               least 2) or `sweep_min_links` different links were clicked within the window,
               that click and later ones of the message in the window are machine. The first
               click of a sweep is caught only by the other rules (usually fast_click); and a
               sweep spread over several function instances is seen per instance.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

APPLE_MPP_USER_AGENT = "Mozilla/5.0"
APPLE_NETWORKS = ("17.0.0.0/8",)  # ARIN NET-17-0-0-0-0, Apple Inc. (checked 2026-11)

# Case-insensitive substrings of user agents that are never a person reading mail.
BOT_USER_AGENT_PATTERNS = (
    r"bot\b", r"crawl", r"spider", r"slurp", r"scanner", r"preview", r"headless",
    r"phantomjs", r"python-requests", r"python-urllib", r"aiohttp", r"httpx", r"^curl/",
    r"^wget/", r"go-http-client", r"^java/", r"okhttp", r"libwww-perl", r"apache-httpclient",
    r"barracuda", r"mimecast", r"proofpoint", r"symantec", r"trendmicro", r"fireeye",
    r"forcepoint", r"sophos", r"cisco", r"ironport", r"zscaler", r"checkpoint",
    r"microsoft office protocol discovery", r"safelinks",
)  # fmt: skip
_BOT = re.compile("|".join(BOT_USER_AGENT_PATTERNS), re.IGNORECASE)


@dataclass(frozen=True)
class Request:
    """One open or click as the tracking endpoint (or a provider) saw it."""

    user_agent: str = ""
    ip: str = ""
    at: float = 0.0
    message_id: str | None = None
    url: str | None = None
    sent_at: float | None = None  # `t` from the signed link
    links_in_message: int | None = None  # `n` from the signed link


@dataclass(frozen=True)
class Verdict:
    is_machine: bool
    reason: str = ""  # apple_mpp | bot_user_agent | proxy_ip | fast_click | link_sweep


HUMAN = Verdict(False)


class LinkSweep:
    """Per message, the links clicked in the last `window_s` seconds (bounded, thread-safe)."""

    def __init__(self, window_s: float = 10.0, min_links: int = 3, max_messages: int = 10_000):
        self.window_s = window_s
        self.min_links = min_links
        self._max = max_messages
        self._clicks: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def is_sweep(self, message_id: str, url: str, at: float, links: int | None) -> bool:
        """Record the click; True when it completes (or continues) a sweep of the message."""
        with self._lock:
            recent = {u: t for u, t in self._clicks.pop(message_id, {}).items()
                      if at - t <= self.window_s}  # fmt: skip
            recent.setdefault(url, at)
            self._clicks[message_id] = recent
            while len(self._clicks) > self._max:
                self._clicks.popitem(last=False)
        needed = self.min_links if not links or links < 2 else min(links, self.min_links)
        return len(recent) >= needed


class MachineDetector:
    def __init__(
        self,
        click_within_s: float = 10.0,
        extra_networks: Iterable[str] = (),
        sweep: LinkSweep | None = None,
    ) -> None:
        self.click_within_s = click_within_s
        self._apple = [ipaddress.ip_network(n) for n in APPLE_NETWORKS]
        self._proxies = [ipaddress.ip_network(n.strip(), strict=False) for n in extra_networks]
        self._sweep = sweep or LinkSweep()

    def classify(self, request: Request) -> Verdict:
        """The verdict from what one request shows (user agent and address)."""
        agent = request.user_agent.strip()
        address = _address(request.ip)
        if agent == APPLE_MPP_USER_AGENT or _within(address, self._apple):
            return Verdict(True, "apple_mpp")
        if not agent or _BOT.search(agent):
            return Verdict(True, "bot_user_agent")
        if _within(address, self._proxies):
            return Verdict(True, "proxy_ip")
        return HUMAN

    def classify_click(self, request: Request) -> Verdict:
        """classify, plus the timing rules that only clicks have."""
        sweep = bool(request.message_id and request.url) and self._sweep.is_sweep(
            str(request.message_id), str(request.url), request.at, request.links_in_message
        )
        verdict = self.classify(request)
        if verdict.is_machine:
            return verdict
        if request.sent_at is not None and 0 <= request.at - request.sent_at < self.click_within_s:
            return Verdict(True, "fast_click")
        return Verdict(True, "link_sweep") if sweep else HUMAN


def _address(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(raw.strip())
    except ValueError:
        return None


def _within(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> bool:
    return address is not None and any(address in n for n in networks)
