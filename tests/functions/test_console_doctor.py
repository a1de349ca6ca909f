"""The console's sending-domain page: `mailpipe doctor` in the browser, against a real DNS
server the test starts (tests/dns_zone.py), with the same checks and the same clear errors."""

from __future__ import annotations

import re
import socket

import pytest
from dns_zone import dns_server

from shared.console.access import ConsoleAccess
from shared.console.app import create_console_app

KEY = "test-admin-key"
DOMAIN = "example.com"
ZONE = {
    (DOMAIN, "TXT"): ["v=spf1 include:sendgrid.net -all"],
    ("sendgrid.net", "TXT"): ["v=spf1 ip4:167.89.0.0/17 ~all"],
    ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=quarantine"],
}


@pytest.fixture
def client(make_container):
    container = make_container()
    app = create_console_app(lambda: container, ConsoleAccess.from_settings(container.settings))
    client = app.test_client()
    page = client.get("/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/sign-in", data={"csrf_token": token, "key": KEY})
    return client


def rows(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-check="([^"]+)" data-status="([^"]+)"', page))


def test_the_page_shows_each_check_with_its_verdict_and_fix(client) -> None:
    with dns_server(dict(ZONE)) as (where, _):
        answer = client.get(f"/doctor?domain={DOMAIN}&dns={where}")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    verdicts = rows(page)
    assert verdicts["MX"] == "fail" and "accepts no mail" in page
    assert verdicts["SPF"] == "pass" and verdicts["MTA-STS"] == "warn" and len(verdicts) >= 9
    assert "check(s) fail." in page


def test_a_silent_dns_server_and_a_bad_name_are_clear_messages(client) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        page = client.get(f"/doctor?domain={DOMAIN}&dns=127.0.0.1:{port}").get_data(as_text=True)
    assert f"DNS server 127.0.0.1:{port} did not answer" in page and "Traceback" not in page
    page = client.get("/doctor?domain=not_a..domain").get_data(as_text=True)
    assert "is not a domain name" in page and 'id="doctor-checks"' not in page


def test_the_page_needs_a_sign_in(make_container) -> None:
    container = make_container()
    app = create_console_app(lambda: container, ConsoleAccess.from_settings(container.settings))
    answer = app.test_client().get(f"/doctor?domain={DOMAIN}")
    assert answer.status_code in (302, 303, 401) and "data-check" not in answer.get_data(True)
