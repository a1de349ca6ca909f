"""A real DNS server for tests: dnslib's DNSServer on 127.0.0.1, a port the OS picks, answering
from a zone built by the test (UDP; TCP too, for answers too long for a datagram).

`zone[(name, type)] = [values]` with types TXT (a value longer than 255 characters is split into
strings, as a zone file would), MX ("pref host"), A, AAAA, PTR. A name with no record of the
asked type answers NOERROR with nothing; a name the zone does not know at all, NXDOMAIN.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import AAAA, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

Zone = dict[tuple[str, str], list[str]]


def _rdata(kind: str, value: str) -> Any:
    if kind == "TXT":
        return TXT([value[i : i + 255].encode() for i in range(0, len(value), 255)] or [b""])
    if kind == "MX":
        preference, host = value.split()
        return MX(host, int(preference))
    return {"A": A, "AAAA": AAAA, "PTR": PTR}[kind](value)


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.questions: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        self.questions.append((name, kind))
        if not any(known == name for known, _ in self.zone):
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in self.zone.get((name, kind), []):
            reply.add_answer(RR(name, request.q.qtype, rdata=_rdata(kind, value), ttl=60))
        return reply


def _bound(resolver: ZoneResolver, tries: int = 20) -> list[DNSServer]:
    """UDP on a port the OS picks, TCP on the same number (another process may hold that
    TCP port: then another pick)."""
    quiet = DNSLogger(logf=lambda line: None)
    for _ in range(tries):
        udp = DNSServer(resolver, address="127.0.0.1", port=0, logger=quiet)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, address="127.0.0.1", port=port, tcp=True, logger=quiet)
        except OSError:
            udp.server.server_close()
            continue
        return [udp, tcp]
    raise OSError("no port free for both UDP and TCP")


@contextmanager
def dns_server(zone: Zone) -> Iterator[tuple[str, ZoneResolver]]:
    """Yields ("127.0.0.1:PORT", the resolver, whose zone the test may change)."""
    resolver = ZoneResolver(zone)
    servers = _bound(resolver)
    port = servers[0].server.server_address[1]
    for server in servers:
        threading.Thread(target=server.server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{port}", resolver
    finally:
        for server in servers:
            server.server.shutdown()
            server.server.server_close()
