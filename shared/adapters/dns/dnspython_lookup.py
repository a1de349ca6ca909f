"""DnspythonLookup: the doctor's DnsLookup port over dnspython.

`server` ("HOST" or "HOST:PORT") asks that server only; empty asks the system's resolvers.
No such name and no record of the type (NXDOMAIN, NoAnswer) are "nothing there": an empty
list. A server that does not answer in time, cannot be reached, or fails or refuses the
question (SERVFAIL, REFUSED: dnspython's NoNameservers) is DnsUnavailable naming the server
and the name: a checklist built on unanswered questions would be wrong.
"""

from __future__ import annotations

import dns.exception
import dns.resolver
import dns.reversename

from shared.domain.errors import InvalidInput
from shared.services.domain_doctor import DnsUnavailable

_NOTHING = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)


def parse_server(server: str) -> tuple[str, int]:
    """ "HOST" or "HOST:PORT" (an IPv6 host in brackets) -> (host, port)."""
    host, port = server.strip(), "53"
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = rest.lstrip(":") or port
    elif host.count(":") == 1:
        host, port = host.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--dns-server {server!r}: expected HOST or HOST:PORT", field="dns")
    return host, int(port)


class DnspythonLookup:
    def __init__(self, server: str = "", timeout_s: float = 3.0) -> None:
        if server:
            host, port = parse_server(server)
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host]
            resolver.port = port
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                raise DnsUnavailable("no DNS resolver configured: pass --dns-server") from exc
        resolver.timeout = resolver.lifetime = timeout_s
        self._resolver = resolver
        self._where = server or ", ".join(map(str, resolver.nameservers)) or "the system resolver"

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode(errors="replace") for r in self._ask(name, "TXT")]

    def mx(self, name: str) -> list[str]:
        records = sorted(self._ask(name, "MX"), key=lambda r: r.preference)
        return [r.exchange.to_text(omit_final_dot=True) for r in records]

    def addresses(self, name: str) -> list[str]:
        return [r.address for kind in ("A", "AAAA") for r in self._ask(name, kind)]

    def ptr(self, ip: str) -> list[str]:
        try:
            reverse = dns.reversename.from_address(ip)
        except (ValueError, dns.exception.SyntaxError) as exc:
            raise InvalidInput(f"--ip {ip!r} is not an IP address", field="ip") from exc
        return [r.target.to_text(omit_final_dot=True) for r in self._ask(reverse, "PTR")]

    def _ask(self, name: object, kind: str) -> list:
        try:
            return list(self._resolver.resolve(name, kind, search=False))  # type: ignore[arg-type]
        except _NOTHING:
            return []
        except dns.exception.Timeout as exc:
            raise DnsUnavailable(
                f"DNS server {self._where} did not answer about {name} {kind} in time"
            ) from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsUnavailable(
                f"DNS server {self._where} could not answer about {name} {kind} "
                "(unreachable, SERVFAIL or REFUSED)"
            ) from exc
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsUnavailable(
                f"DNS server {self._where} failed on {name} {kind}: {exc}"
            ) from exc
