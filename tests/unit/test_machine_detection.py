"""Human or machine: Apple MPP, bot user agents, listed networks, fast clicks, link sweeps."""

from __future__ import annotations

import pytest

from shared.domain.machine_detection import LinkSweep, MachineDetector, Request

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
PHONE_MAIL = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"


@pytest.mark.parametrize(
    ("agent", "ip", "reason"),
    [
        ("Mozilla/5.0", "203.0.113.9", "apple_mpp"),
        (BROWSER, "17.58.101.4", "apple_mpp"),
        ("", "203.0.113.9", "bot_user_agent"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1)", "66.249.66.1", "bot_user_agent"),
        ("python-requests/2.32", "198.51.100.1", "bot_user_agent"),
        ("curl/8.5.0", "198.51.100.1", "bot_user_agent"),
        ("Mozilla/5.0 (X11) HeadlessChrome/126.0", "198.51.100.1", "bot_user_agent"),
        ("Barracuda Sentinel (EE)", "198.51.100.1", "bot_user_agent"),
        (BROWSER, "192.0.2.77", "proxy_ip"),
    ],
)
def test_machines(agent: str, ip: str, reason: str) -> None:
    detector = MachineDetector(extra_networks=["192.0.2.0/24"])
    verdict = detector.classify(Request(user_agent=agent, ip=ip))
    assert (verdict.is_machine, verdict.reason) == (True, reason)


@pytest.mark.parametrize(
    "agent",
    [BROWSER, PHONE_MAIL, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko Firefox/128",
     "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
     "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"],
)  # fmt: skip
def test_people_and_open_time_proxies_are_human(agent: str) -> None:
    verdict = MachineDetector().classify(Request(user_agent=agent, ip="203.0.113.9"))
    assert verdict.is_machine is False


def click(at: float, url: str = "https://example.com/a", sent_at: float | None = 1000.0) -> Request:
    return Request(user_agent=BROWSER, ip="203.0.113.9", at=at, message_id="m1", url=url,
                   sent_at=sent_at)  # fmt: skip


def test_a_click_within_seconds_of_the_send_is_a_scanner() -> None:
    detector = MachineDetector(click_within_s=10)
    assert detector.classify_click(click(at=1004.0)).reason == "fast_click"
    assert (
        detector.classify_click(click(at=1600.0, url="https://example.com/b")).is_machine is False
    )


def test_the_fast_click_window_is_configurable() -> None:
    assert MachineDetector(click_within_s=2).classify_click(click(at=1004.0)).is_machine is False


def test_a_click_without_a_send_time_is_judged_on_the_rest() -> None:
    assert MachineDetector().classify_click(click(at=1001.0, sent_at=None)).is_machine is False


def test_following_every_link_within_seconds_is_a_sweep() -> None:
    detector = MachineDetector(sweep=LinkSweep(window_s=10, min_links=3))
    first = detector.classify_click(click(5000.0, "https://example.com/a"))
    second = detector.classify_click(click(5000.5, "https://example.com/b"))
    third = detector.classify_click(click(5001.0, "https://example.com/c"))
    again = detector.classify_click(click(5001.5, "https://example.com/a"))
    assert [first.is_machine, second.is_machine] == [False, False]
    assert (third.reason, again.reason) == ("link_sweep", "link_sweep")


def test_a_person_clicking_links_minutes_apart_is_human() -> None:
    detector = MachineDetector(sweep=LinkSweep(window_s=10, min_links=3))
    verdicts = [
        detector.classify_click(click(5000.0 + 60 * n, f"https://example.com/{n}"))
        for n in range(4)
    ]
    assert not any(v.is_machine for v in verdicts)


def test_the_sweep_window_is_bounded_in_memory() -> None:
    sweep = LinkSweep(window_s=10, min_links=3, max_messages=2)
    for n in range(5):
        sweep.is_sweep(f"m{n}", "https://example.com/a", 1.0, None)
    assert len(sweep._clicks) == 2  # the oldest messages were forgotten


def test_the_sweep_uses_the_messages_link_count_when_known() -> None:
    sweep = LinkSweep(window_s=10, min_links=3)
    assert sweep.is_sweep("m", "https://example.com/a", 1.0, 2) is False
    assert sweep.is_sweep("m", "https://example.com/b", 2.0, 2) is True
