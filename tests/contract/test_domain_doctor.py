"""`mailpipe doctor`: the checks run against zones served by a real local DNS server (dnslib),
asked through the dnspython adapter. A good domain passes every check; each broken record
fails (or warns) with its reason; DNS that does not answer is a clear error, never a trace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from pathlib import Path

import pytest
from dns_zone import Zone, dns_server

from shared.adapters.dns.dnspython_lookup import DnspythonLookup
from shared.adapters.esp.dkim_signer import generate_key
from shared.domain.errors import InvalidInput
from shared.services.domain_doctor import (
    FAIL,
    PASS,
    WARN,
    DnsUnavailable,
    DoctorConfig,
    DomainDoctor,
    Report,
    SendRates,
)
from shared.topology import REPO_ROOT

DOMAIN = "example.com"
IP = "192.0.2.1"
PEM, KEY = generate_key("ed25519")
_, OTHER_KEY = generate_key("ed25519")
ONE_CLICK = {
    "List-Unsubscribe": "<https://mail.example.com/u/x>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def good_zone() -> Zone:
    return {
        (DOMAIN, "TXT"): [
            "v=spf1 include:_spf.example.com ip4:192.0.2.0/24 -all",
            "site-verification=abc",
        ],
        ("_spf.example.com", "TXT"): ["v=spf1 a mx include:sendgrid.net ~all"],
        ("sendgrid.net", "TXT"): ["v=spf1 ip4:167.89.0.0/17 ~all"],
        ("mp1._domainkey.example.com", "TXT"): [KEY.txt_record()],
        ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=quarantine; rua=mailto:d@example.com"],
        (DOMAIN, "MX"): ["10 mx.example.com"],
        ("1.2.0.192.in-addr.arpa", "PTR"): ["mail.example.com"],
        ("mail.example.com", "A"): [IP],
        ("_mta-sts.example.com", "TXT"): ["v=STSv1; id=20260101"],
        ("_smtp._tls.example.com", "TXT"): ["v=TLSRPTv1; rua=mailto:tls@example.com"],
    }


TYPICAL = SendRates(10_000, 50, 2)
CONFIG = DoctorConfig(
    from_domain=DOMAIN, esp="sendgrid", dkim_selector="mp1", dkim_public_key=KEY.public_b64
)


@pytest.fixture
def zone() -> Iterator[tuple[Zone, str]]:
    records = good_zone()
    with dns_server(records) as (where, _):
        yield records, where


def examine(
    where: str,
    config: DoctorConfig = CONFIG,
    rates: SendRates = TYPICAL,
    headers: Mapping[str, str] = ONE_CLICK,
) -> Report:
    doctor = DomainDoctor(
        DnspythonLookup(where, timeout_s=1.0),
        config,
        lambda first, last: rates,
        lambda: headers,
        lambda: date(2026, 12, 7),
    )
    return doctor.examine(DOMAIN, IP)


def check(report: Report, name: str) -> tuple[str, str]:
    (found,) = [c for c in report.checks if c.name == name]
    return found.status, found.detail


def test_a_good_domain_passes_every_check(zone: tuple[Zone, str]) -> None:
    report = examine(zone[1])
    assert [(c.name, c.status) for c in report.checks] == [
        (name, PASS)
        for name in (
            "SPF",
            "DKIM",
            "DMARC",
            "MX",
            "PTR",
            "MTA-STS",
            "TLS-RPT",
            "Bounce rate",
            "Complaint rate",
            "List-Unsubscribe",
        )
    ]
    assert report.ok
    assert "4 of 10 lookups" in check(report, "SPF")[1]  # 2 includes, a, mx


BROKEN: list[tuple[str, Callable[[Zone], None], str, str, str]] = [
    ("spf missing", lambda z: z.pop((DOMAIN, "TXT")), "SPF", FAIL, "no SPF record"),
    ("spf twice", lambda z: z[(DOMAIN, "TXT")].append("v=spf1 -all"), "SPF", FAIL, "2 SPF records"),
    (
        "spf +all",
        lambda z: z.__setitem__((DOMAIN, "TXT"), ["v=spf1 include:sendgrid.net +all"]),
        "SPF",
        FAIL,
        "anyone may send",
    ),
    (
        "spf without the esp",
        lambda z: z.__setitem__((DOMAIN, "TXT"), ["v=spf1 mx -all"]),
        "SPF",
        FAIL,
        "does not include sendgrid.net",
    ),
    (
        "spf include of nothing",
        lambda z: z.__setitem__((DOMAIN, "TXT"), ["v=spf1 include:gone.example.org -all"]),
        "SPF",
        FAIL,
        "gone.example.org has no SPF record",
    ),
    (
        "spf bad term",
        lambda z: z.__setitem__((DOMAIN, "TXT"), ["v=spf1 inclde:x.org -all"]),
        "SPF",
        FAIL,
        "unknown SPF term",
    ),
    ("spf over ten lookups", lambda z: _long_chain(z), "SPF", FAIL, "DNS lookups (limit 10)"),
    (
        "dkim missing",
        lambda z: z.pop(("mp1._domainkey.example.com", "TXT")),
        "DKIM",
        FAIL,
        "no DKIM key published at mp1._domainkey.example.com",
    ),
    (
        "dkim other key",
        lambda z: z.__setitem__(("mp1._domainkey.example.com", "TXT"), [OTHER_KEY.txt_record()]),
        "DKIM",
        FAIL,
        "not the one Mailpipe signs with",
    ),
    (
        "dkim revoked",
        lambda z: z.__setitem__(("mp1._domainkey.example.com", "TXT"), ["v=DKIM1; p="]),
        "DKIM",
        FAIL,
        "revoked",
    ),
    (
        "dmarc missing",
        lambda z: z.pop(("_dmarc.example.com", "TXT")),
        "DMARC",
        FAIL,
        "no DMARC record for example.com",
    ),
    (
        "dmarc bad policy",
        lambda z: z.__setitem__(("_dmarc.example.com", "TXT"), ["v=DMARC1; p=maybe"]),
        "DMARC",
        FAIL,
        "invalid policy",
    ),
    (
        "dmarc monitoring only",
        lambda z: z.__setitem__(("_dmarc.example.com", "TXT"), ["v=DMARC1; p=none"]),
        "DMARC",
        WARN,
        "p=none",
    ),
    ("mx missing", lambda z: z.pop((DOMAIN, "MX")), "MX", FAIL, "accepts no mail"),
    (
        "ptr missing",
        lambda z: z.pop(("1.2.0.192.in-addr.arpa", "PTR")),
        "PTR",
        FAIL,
        "no reverse DNS",
    ),
    (
        "ptr not back",
        lambda z: z.__setitem__(("mail.example.com", "A"), ["192.0.2.99"]),
        "PTR",
        FAIL,
        "does not resolve back",
    ),
    (
        "no mta-sts",
        lambda z: z.pop(("_mta-sts.example.com", "TXT")),
        "MTA-STS",
        WARN,
        "not published",
    ),
    (
        "no tls-rpt",
        lambda z: z.pop(("_smtp._tls.example.com", "TXT")),
        "TLS-RPT",
        WARN,
        "not published",
    ),
]


def _long_chain(zone: Zone) -> None:
    zone[(DOMAIN, "TXT")] = ["v=spf1 include:sendgrid.net include:c0.example.com -all"]
    for n in range(10):
        zone[(f"c{n}.example.com", "TXT")] = [f"v=spf1 a include:c{n + 1}.example.com ~all"]
    zone[("c10.example.com", "TXT")] = ["v=spf1 ~all"]


@pytest.mark.parametrize(
    ("case", "breaks", "name", "status", "reason"), BROKEN, ids=[b[0] for b in BROKEN]
)
def test_each_broken_record_is_named_with_its_reason(
    zone: tuple[Zone, str],
    case: str,
    breaks: Callable[[Zone], None],
    name: str,
    status: str,
    reason: str,
) -> None:
    records, where = zone
    breaks(records)
    report = examine(where)
    seen, detail = check(report, name)
    assert (seen, reason in detail) == (status, True), detail
    assert report.ok == (status != FAIL)
    others = [c for c in report.checks if c.name != name]
    assert all(c.status == PASS for c in others), [c for c in others if c.status != PASS]
    (broken,) = [c for c in report.checks if c.name == name]
    assert broken.fix, "every check that does not pass says how to fix it"


def test_dmarc_alignment_with_the_from_domain(zone: tuple[Zone, str]) -> None:
    records, where = zone
    records[("mp1._domainkey.mail-esp.net", "TXT")] = [KEY.txt_record()]
    config = DoctorConfig(
        from_domain=DOMAIN,
        esp="sendgrid",
        dkim_selector="mp1",
        dkim_domain="mail-esp.net",
        dkim_public_key=KEY.public_b64,
    )
    status, detail = check(examine(where, config), "DMARC")
    assert (status, detail) == (
        FAIL,
        "From example.com is not aligned (relaxed) with the signing domain mail-esp.net",
    )
    subdomain = DoctorConfig(
        from_domain="news.example.com",
        esp="sendgrid",
        dkim_selector="mp1",
        dkim_public_key=KEY.public_b64,
    )
    assert check(examine(where, subdomain), "DMARC")[0] == PASS  # relaxed, org domain's record
    records[("_dmarc.example.com", "TXT")] = ["v=DMARC1; p=reject; adkim=s"]
    assert check(examine(where, subdomain), "DMARC")[0] == FAIL  # strict wants the same name


@pytest.mark.parametrize(
    ("rates", "bounce", "complaint"),
    [
        (SendRates(10_000, 300, 0), FAIL, PASS),  # 3 % bounces
        (SendRates(10_000, 0, 20), PASS, WARN),  # 0.2 % complaints
        (SendRates(10_000, 0, 40), PASS, FAIL),  # 0.4 % complaints
        (SendRates(0, 0, 0), PASS, PASS),  # nothing sent
    ],
)
def test_rates_against_the_lines(
    zone: tuple[Zone, str], rates: SendRates, bounce: str, complaint: str
) -> None:
    report = examine(zone[1], rates=rates)
    assert (check(report, "Bounce rate")[0], check(report, "Complaint rate")[0]) == (
        bounce,
        complaint,
    )


def test_marketing_mail_without_one_click_fails(zone: tuple[Zone, str]) -> None:
    only_link = {"List-Unsubscribe": "<https://mail.example.com/u/x>"}
    assert check(examine(zone[1], headers=only_link), "List-Unsubscribe") == (
        FAIL,
        "no List-Unsubscribe-Post: one-click missing",
    )
    assert check(examine(zone[1], headers={}), "List-Unsubscribe")[0] == FAIL


def test_unreachable_dns_and_bad_input_are_clear_errors() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(DnsUnavailable, match=f"DNS server {where} did not answer"):
            examine(where)
    with dns_server({}) as (where, _), pytest.raises(InvalidInput, match="not a domain"):
        DomainDoctor(
            DnspythonLookup(where), CONFIG, lambda a, b: SendRates(0, 0, 0), dict, date.today
        ).examine("not a domain!")
    with pytest.raises(InvalidInput, match="HOST:PORT"):
        DnspythonLookup("127.0.0.1:notaport")


def _mailpipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MAILPIPE_DATA_DIR": str(tmp_path / "data"),
        "MAILPIPE_SENDER": f"News <news@{DOMAIN}>",
        "MAILPIPE_ESP": "sendgrid",
        "MAILPIPE_DKIM_PRIVATE_KEY": PEM,
        "MAILPIPE_DKIM_SELECTOR": "mp1",
        "MAILPIPE_PUBLIC_URL": "https://mail.example.com",
        "COLUMNS": "200",
        "MAILPIPE_TEMPLATE_ROOT": str(REPO_ROOT / "templates"),
    }
    command = [sys.executable, "-m", "shared.cli.main", "doctor", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )


@pytest.mark.slow
def test_the_command_prints_the_checklist_and_exits_by_the_verdict(
    tmp_path: Path, zone: tuple[Zone, str]
) -> None:
    records, where = zone
    good = _mailpipe(tmp_path, DOMAIN, "--ip", IP, "--dns-server", where)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.count("PASS") == 10 and "FAIL" not in good.stdout
    records.pop((DOMAIN, "MX"))
    broken = _mailpipe(tmp_path, DOMAIN, "--dns-server", where)
    assert broken.returncode == 1
    assert "FAIL" in broken.stdout and "accepts no mail" in broken.stdout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        down = _mailpipe(tmp_path, DOMAIN, "--dns-server", f"127.0.0.1:{port}")
    assert down.returncode == 1
    assert f"DNS server 127.0.0.1:{port} did not answer" in down.stderr
    assert "Traceback" not in down.stdout + down.stderr
