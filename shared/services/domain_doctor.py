"""The sending-domain doctor: the checks mailbox providers make, as a checklist with fixes.

Gmail's and Yahoo's bulk-sender rules (in force since February 2024): SPF and DKIM, a DMARC
record whose policy covers a From domain aligned with DKIM's, forward-confirmed reverse DNS
for sending IPs, one-click unsubscribe on marketing mail, a spam complaint rate under 0.3 %
(aim under 0.1 %). Bounce rates are held to 2 %, a common line of ESPs. MTA-STS and TLS-RPT
are good practice, so they only ever warn.

Each check answers pass / warn / fail with what was seen and, when not passing, how to fix it.
DNS comes through the `DnsLookup` port (dnspython in shared/adapters/dns), so the CLI and a
console page can run the same checks; a DNS server that does not answer is a DnsUnavailable,
raised, since a checklist built on unanswered questions would be wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from shared.domain import dns_records as dns
from shared.domain.errors import InvalidInput, MailpipeError, TransientError

PASS, WARN, FAIL = "pass", "warn", "fail"
BOUNCE_LIMIT = 0.02
COMPLAINT_RECOMMENDED = 0.001
COMPLAINT_MAXIMUM = 0.003
RATE_WINDOW_DAYS = 30
# The SPF include each provider's documentation asks for (smtp: MAILPIPE_SPF_INCLUDE, if any).
ESP_SPF_INCLUDES = {"sendgrid": "sendgrid.net", "mailgun": "mailgun.org", "ses": "amazonses.com"}
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class DnsUnavailable(TransientError):
    """The DNS server did not answer (timeout, refused, unreachable)."""


class DnsLookup(Protocol):
    """DNS questions. A name that does not exist, or has no record of the type, is an empty
    list; a server that does not answer raises DnsUnavailable."""

    def txt(self, name: str) -> list[str]:
        """TXT records, each one's strings joined."""

    def mx(self, name: str) -> list[str]:
        """MX exchanges (host names, no trailing dot), lowest preference first."""

    def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses."""

    def ptr(self, ip: str) -> list[str]:
        """Reverse names of an IP address (no trailing dot)."""


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass | warn | fail
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class SendRates:
    sent: int
    bounces: int
    complaints: int


@dataclass(frozen=True)
class DoctorConfig:
    """What Mailpipe is configured to send with (from Settings, via bootstrap)."""

    from_domain: str  # MAILPIPE_SENDER's domain
    esp: str
    spf_include: str = ""  # overrides ESP_SPF_INCLUDES
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_public_key: str = ""  # p= of the configured key; empty: no key configured


@dataclass(frozen=True)
class Report:
    domain: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)


RatesSource = Callable[[date, date], SendRates]  # first day, last day -> totals
HeadersSource = Callable[[], Mapping[str, str]]  # a rendered marketing message's headers


class DomainDoctor:
    def __init__(
        self,
        dns_lookup: DnsLookup,
        config: DoctorConfig,
        rates: RatesSource,
        marketing_headers: HeadersSource,
        today: Callable[[], date],
    ) -> None:
        self._dns = dns_lookup
        self._config = config
        self._rates = rates
        self._headers = marketing_headers
        self._today = today

    def examine(self, domain: str, ip: str | None = None) -> Report:
        """Every check for `domain` (and the sending IP, when given). InvalidInput for a name
        that is not a domain; DnsUnavailable when DNS does not answer."""
        name = domain.strip().rstrip(".").lower()
        if not _DOMAIN.match(name):
            raise InvalidInput(f"{domain!r} is not a domain name", field="domain")
        checks = [self.spf(name), self.dkim(name), self.dmarc(name), self.mx(name)]
        if ip:
            checks.append(self.ptr(ip))
        checks += [self.mta_sts(name), self.tls_rpt(name), *self.rates(), self.unsubscribe()]
        return Report(name, checks)

    # -- SPF ---------------------------------------------------------------------------------

    def spf(self, domain: str) -> Check:
        records = dns.spf_records(self._dns.txt(domain))
        if not records:
            return Check(
                "SPF",
                FAIL,
                f"no SPF record at {domain}",
                f'publish TXT "v=spf1 {self._spf_hint()}-all" at {domain}',
            )
        if len(records) > 1:
            return Check(
                "SPF",
                FAIL,
                f"{len(records)} SPF records at {domain} (permerror)",
                "merge them into one v=spf1 record",
            )
        walk = dns.SpfWalk()
        walk.walk(domain, self._dns.txt)
        return self._spf_verdict(records[0], walk)

    def _spf_verdict(self, record: str, walk: dns.SpfWalk) -> Check:
        if walk.problems:
            return Check(
                "SPF",
                FAIL,
                f"invalid: {'; '.join(walk.problems)} ({record})",
                "fix or remove the terms named",
            )
        if walk.lookups > dns.SPF_LOOKUP_LIMIT:
            return Check(
                "SPF",
                FAIL,
                f"{walk.lookups}+ DNS lookups (limit {dns.SPF_LOOKUP_LIMIT}): receivers "
                "answer permerror",
                "replace includes by ip4:/ip6: ranges, or drop providers you no longer use",
            )
        include = self._spf_include()
        if include and include not in walk.includes:
            return Check(
                "SPF",
                FAIL,
                f"does not include {include} ({self._config.esp})",
                f"add include:{include} before the all term",
            )
        if walk.all_qualifier in ("+", "?"):
            return Check(
                "SPF",
                FAIL,
                f"ends in {walk.all_qualifier}all: anyone may send as you",
                "end the record with -all (or ~all)",
            )
        return Check("SPF", PASS, f"{record} ({walk.lookups} of {dns.SPF_LOOKUP_LIMIT} lookups)")

    def _spf_include(self) -> str:
        return self._config.spf_include or ESP_SPF_INCLUDES.get(self._config.esp, "")

    def _spf_hint(self) -> str:
        include = self._spf_include()
        return f"include:{include} " if include else "ip4:<your sending IP> "

    # -- DKIM --------------------------------------------------------------------------------

    def dkim(self, domain: str) -> Check:
        config = self._config
        selector = config.dkim_selector
        if not selector:
            return Check(
                "DKIM",
                WARN,
                "no DKIM key configured in Mailpipe "
                "(MAILPIPE_DKIM_SELECTOR): mail is signed only if the ESP signs it",
                "mailpipe dkim keygen, publish the record, set MAILPIPE_DKIM_*",
            )
        signing = config.dkim_domain or domain
        name = f"{selector}._domainkey.{signing}"
        records = [r for r in self._dns.txt(name) if "p=" in r]
        if not records:
            return Check(
                "DKIM",
                FAIL,
                f"no DKIM key published at {name}",
                "publish the TXT record that `mailpipe dkim keygen` printed",
            )
        published = dns.tags(records[0]).get("p", "")
        if not published:
            return Check(
                "DKIM",
                FAIL,
                f"the key at {name} is revoked (empty p=)",
                "publish the current key's record",
            )
        if config.dkim_public_key and published != config.dkim_public_key:
            return Check(
                "DKIM",
                FAIL,
                f"the key at {name} is not the one Mailpipe signs with",
                "publish the record of MAILPIPE_DKIM_PRIVATE_KEY's key (or rotate: new "
                "selector, new key)",
            )
        return Check("DKIM", PASS, f"key published at {name}, matching the configured key")

    # -- DMARC -------------------------------------------------------------------------------

    def dmarc(self, domain: str) -> Check:
        from_domain = self._config.from_domain or domain
        record, where = self._dmarc_record(from_domain)
        if record is None:
            return Check(
                "DMARC",
                FAIL,
                f"no DMARC record for {from_domain}",
                f'publish TXT "v=DMARC1; p=none; rua=mailto:dmarc@{from_domain}" at '
                f"_dmarc.{from_domain}, then move to p=quarantine",
            )
        values = dns.tags(record)
        policy = values.get("p", "")
        if policy not in ("none", "quarantine", "reject"):
            return Check(
                "DMARC",
                FAIL,
                f"invalid policy p={policy!r} at {where}",
                "p must be none, quarantine or reject",
            )
        misaligned = self._misaligned(from_domain, domain, values.get("adkim", "r"))
        if misaligned:
            return Check(
                "DMARC",
                FAIL,
                misaligned,
                "sign with d= the From domain (or a "
                "subdomain of it, with relaxed alignment), or change MAILPIPE_SENDER",
            )
        if policy == "none":
            return Check(
                "DMARC",
                WARN,
                f"p=none at {where}: monitoring only",
                "move to p=quarantine once reports show your mail aligned",
            )
        return Check("DMARC", PASS, f"p={policy} at {where}, From {from_domain} aligned")

    def _dmarc_record(self, from_domain: str) -> tuple[str | None, str]:
        """The From domain's record, else its organizational domain's (RFC 7489 6.6.3)."""
        for name in dict.fromkeys([from_domain, dns.organizational_domain(from_domain)]):
            found = [t for t in self._dns.txt(f"_dmarc.{name}") if t.startswith("v=DMARC1")]
            if found:
                return found[0], f"_dmarc.{name}"
        return None, ""

    def _misaligned(self, from_domain: str, domain: str, mode: str) -> str:
        signing = self._config.dkim_domain or domain
        if dns.aligned(from_domain, signing, mode):
            return ""
        how = "strict" if mode == "s" else "relaxed"
        return f"From {from_domain} is not aligned ({how}) with the signing domain {signing}"

    # -- MX, PTR, MTA-STS, TLS-RPT ------------------------------------------------------------

    def mx(self, domain: str) -> Check:
        hosts = [h for h in self._dns.mx(domain) if h not in ("", ".")]
        if not hosts:
            return Check(
                "MX",
                FAIL,
                f"{domain} accepts no mail (no MX)",
                "publish an MX record: replies and bounces need somewhere to go, and "
                "receivers distrust senders that cannot receive",
            )
        return Check("MX", PASS, ", ".join(hosts))

    def ptr(self, ip: str) -> Check:
        names = self._dns.ptr(ip)
        if not names:
            return Check(
                "PTR",
                FAIL,
                f"{ip} has no reverse DNS name",
                "ask whoever owns the IP to set its PTR to your mail host's name",
            )
        for name in names:
            if ip in self._dns.addresses(name):
                return Check("PTR", PASS, f"{ip} -> {name} -> {ip}")
        return Check(
            "PTR",
            FAIL,
            f"{ip} -> {', '.join(names)}, which does not resolve back",
            f"add an A/AAAA record {names[0]} -> {ip}",
        )

    def mta_sts(self, domain: str) -> Check:
        found = [t for t in self._dns.txt(f"_mta-sts.{domain}") if t.startswith("v=STSv1")]
        if not found:
            return Check(
                "MTA-STS",
                WARN,
                "not published",
                f'publish TXT "v=STSv1; id=<date>" at _mta-sts.{domain} and the '
                f"policy at https://mta-sts.{domain}/.well-known/mta-sts.txt",
            )
        return Check("MTA-STS", PASS, found[0])

    def tls_rpt(self, domain: str) -> Check:
        found = [t for t in self._dns.txt(f"_smtp._tls.{domain}") if t.startswith("v=TLSRPTv1")]
        if not found:
            return Check(
                "TLS-RPT",
                WARN,
                "not published",
                f'publish TXT "v=TLSRPTv1; rua=mailto:tls@{domain}" at _smtp._tls.{domain}',
            )
        return Check("TLS-RPT", PASS, found[0])

    # -- the warehouse and the mail itself ----------------------------------------------------

    def rates(self) -> list[Check]:
        last = self._today()
        try:
            totals = self._rates(last - timedelta(days=RATE_WINDOW_DAYS - 1), last)
        except MailpipeError as exc:
            note = f"could not read the warehouse: {exc}"
            fix = "run it where the warehouse is reachable (MAILPIPE_BACKEND, MAILPIPE_DATA_DIR)"
            return [Check("Bounce rate", WARN, note, fix), Check("Complaint rate", WARN, note, fix)]
        if not totals.sent:
            note = f"nothing sent in the last {RATE_WINDOW_DAYS} days"
            return [Check("Bounce rate", PASS, note), Check("Complaint rate", PASS, note)]
        return [_bounce_check(totals), _complaint_check(totals)]

    def unsubscribe(self) -> Check:
        try:
            headers = {k.lower(): v for k, v in self._headers().items()}
        except MailpipeError as exc:
            return Check(
                "List-Unsubscribe",
                WARN,
                f"could not render a campaign message: {exc}",
                "fix the template (mailpipe campaign preview)",
            )
        link = headers.get("list-unsubscribe", "")
        post = headers.get("list-unsubscribe-post", "")
        if "<https://" not in link and "<http://" not in link:
            return Check(
                "List-Unsubscribe",
                FAIL,
                "marketing mail has no List-Unsubscribe URL",
                "render campaigns as marketing mail",
            )
        if post != "List-Unsubscribe=One-Click":
            return Check(
                "List-Unsubscribe",
                FAIL,
                "no List-Unsubscribe-Post: one-click missing",
                "add List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            )
        warn = link.startswith("<http://")
        detail = "one-click headers present on a rendered campaign message"
        if warn:
            return Check(
                "List-Unsubscribe",
                WARN,
                f"{detail}, but over http",
                "set MAILPIPE_PUBLIC_URL to an https address",
            )
        return Check("List-Unsubscribe", PASS, detail)


def _bounce_check(totals: SendRates) -> Check:
    rate = totals.bounces / totals.sent
    detail = f"{rate:.2%} ({totals.bounces} of {totals.sent} in {RATE_WINDOW_DAYS} days)"
    if rate >= BOUNCE_LIMIT:
        return Check(
            "Bounce rate",
            FAIL,
            f"{detail}, over {BOUNCE_LIMIT:.0%}",
            "remove stale addresses; confirm new signups (double opt-in)",
        )
    return Check("Bounce rate", PASS, detail)


def _complaint_check(totals: SendRates) -> Check:
    rate = totals.complaints / totals.sent
    detail = f"{rate:.2%} ({totals.complaints} of {totals.sent} in {RATE_WINDOW_DAYS} days)"
    fix = "mail only people who asked, less often; make unsubscribing easy"
    if rate >= COMPLAINT_MAXIMUM:
        return Check("Complaint rate", FAIL, f"{detail}, at or over {COMPLAINT_MAXIMUM:.1%}", fix)
    if rate >= COMPLAINT_RECOMMENDED:
        return Check("Complaint rate", WARN, f"{detail}, over {COMPLAINT_RECOMMENDED:.1%}", fix)
    return Check("Complaint rate", PASS, detail)


def rates_from_days(
    rows: Sequence[tuple[date, int, int, int]], first: date, last: date
) -> SendRates:
    """Totals of (day, sent, bounces, complaints) rows within [first, last]."""
    within = [r for r in rows if first <= r[0] <= last]
    return SendRates(
        sum(r[1] for r in within), sum(r[2] for r in within), sum(r[3] for r in within)
    )
