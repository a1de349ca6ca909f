"""A throttling storm: the provider answers 429 (or SMTP 421) to most requests for a while.

The real SendService (SendLedger on SqliteDocuments, Outbox over SqliteBus, both in tmp_path)
sends through the real rate-limited mailer to a fake provider; every Throttled or
TransientError is "redelivered" the way the bus would, after the lease of the interrupted
delivery lapsed. When it is over, the provider's own record is the truth: every recipient
was accepted exactly once, and the ledger says "sent" for exactly those.
"""

from __future__ import annotations

import mailbox
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from contract.fakes.clock import FakeClock
from contract.fakes.emails import campaign_emails
from contract.fakes.esp_servers import FakeEspServer, FakeMailgun, FakeSendGrid, FakeSes
from contract.fakes.smtp_server import smtp_server
from support import free_port

from shared.adapters.esp.mailgun_mailer import MailgunMailer
from shared.adapters.esp.rate_limit import RateLimitedMailer
from shared.adapters.esp.sendgrid_mailer import SendGridMailer
from shared.adapters.esp.ses_mailer import SesMailer
from shared.adapters.esp.smtp_mailer import SmtpMailer
from shared.adapters.local.sqlite_bus import SqliteBus
from shared.adapters.local.sqlite_documents import SqliteDocuments
from shared.bench.faulty_sink import FaultySink
from shared.domain.errors import AlreadyProcessed, TransientError
from shared.domain.messages import MARKETING, SendBatch
from shared.ports import Mailer, OutgoingEmail, SendResult
from shared.repositories.send_ledger import DONE, SendLedger
from shared.repositories.suppressions import Suppressions
from shared.services.publishing import Outbox
from shared.services.sending import SendService

LEASE_S = 120.0
STORM_FRACTION = 0.7
STORM_REQUESTS = 60
NAMES = ["Ann", "Mary Ann", "Bob", "", "Li", "Jo Jo"]  # three template shapes per chunk

# provider -> a context giving (mailer, accepted Message-IDs, how many 429/421 answers)
Provider = Callable[[Path], Iterator[tuple[Mailer, Callable[[], Counter[str]], Callable[[], int]]]]


def _http(fake: FakeEspServer, build: Callable[[str], Mailer], message_id: Callable) -> Iterator:
    with fake.running():
        fake.storm(STORM_FRACTION, STORM_REQUESTS, retry_after="1")
        yield (
            build(fake.url),
            lambda: Counter(message_id(d) for d in fake.deliveries),
            lambda: sum(1 for r in fake.replies if r.status == 429),
        )
        assert fake.problems == []


@contextmanager
def sendgrid(tmp_path: Path) -> Iterator:
    yield from _http(
        FakeSendGrid("k"), lambda url: SendGridMailer("k", url), lambda d: d.args["message_id"]
    )


@contextmanager
def mailgun(tmp_path: Path) -> Iterator:
    yield from _http(
        FakeMailgun("k", "mg.test"),
        lambda url: MailgunMailer("k", "mg.test", url),
        lambda d: d.args["message_id"],
    )


@contextmanager
def ses(tmp_path: Path) -> Iterator:
    yield from _http(
        FakeSes("AKID", "eu-west-1"),
        lambda url: SesMailer("eu-west-1", url, "AKID", "secret"),
        lambda d: d.header("Message-ID").strip("<>"),
    )


@contextmanager
def smtp(tmp_path: Path) -> Iterator:
    with smtp_server(tmp_path / "maildir") as (handler, port):
        handler.storm(STORM_FRACTION, STORM_REQUESTS)
        yield SmtpMailer("127.0.0.1", port), handler.message_ids, lambda: handler.stormed


@pytest.mark.parametrize("provider", [sendgrid, mailgun, ses, smtp], ids=lambda p: p.__name__)
def test_every_recipient_is_sent_exactly_once_through_a_storm(
    tmp_path: Path, provider: Provider
) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    documents = SqliteDocuments(tmp_path / "documents.sqlite3")
    ledger = SendLedger(documents, lease_s=LEASE_S)
    bus = SqliteBus(tmp_path / "bus.sqlite3", clock=clock)
    batches = [
        SendBatch(
            batch_id=f"cmp-1-b{b}",
            kind=MARKETING,
            audience_at=clock(),
            emails=campaign_emails(NAMES * 8, start=b * 100),
            campaign_id="cmp-1",
        )
        for b in range(4)
    ]
    with provider(tmp_path) as (inner, accepted, storm_answers):
        mailer = RateLimitedMailer(inner, 200.0, clock, clock.sleep)
        service = SendService(
            ledger,
            Suppressions(documents, "hash-key"),
            mailer,
            Outbox(bus),
            clock,
            chunk_size=20,
            max_attempts=100,
            sleep=clock.sleep,
        )
        deliveries = _deliver_until_done(service, batches, clock)
        truth = accepted()
        stormed = storm_answers()

    expected = [e.message_id for b in batches for e in b.emails]
    assert stormed >= 15, "the storm really happened"
    assert deliveries > len(batches), "some deliveries had to be retried"
    assert sorted(truth) == sorted(expected), "nobody lost"
    assert set(truth.values()) == {1}, "nobody sent twice"
    for batch in batches:
        entry = ledger.get(batch.batch_id)
        assert entry is not None and entry.state == DONE
        assert set(entry.outcomes.values()) == {"sent"}
        assert sorted(entry.outcomes) == sorted(e.subscriber_id for e in batch.emails)


def _deliver_until_done(service: SendService, batches: list[SendBatch], clock: FakeClock) -> int:
    """What the bus does: deliver, and redeliver after a backoff until the handler succeeds."""
    pending = list(batches)
    deliveries = 0
    while pending:
        assert deliveries < 400, "no progress"
        batch = pending.pop(0)
        deliveries += 1
        try:
            service.handle(batch)
        except AlreadyProcessed:
            pass
        except TransientError:  # Throttled included: redeliver once the lease has lapsed
            clock.advance(LEASE_S + 1)
            pending.append(batch)
    return deliveries


# -- per-recipient deferrals: retried within the delivery ---------------------------------------


class DeferringMailer:
    """Answers 451 4.3.0 to a seeded-random fraction of messages (every time for `always`),
    accepting the rest: a server deferring single recipients, not throttling."""

    name = "deferring"

    def __init__(self, fraction: float, always: frozenset[str] = frozenset()) -> None:
        self.fraction = fraction
        self.always = always
        self.accepted: Counter[str] = Counter()
        self.calls = 0
        self._random = random.Random(5)

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.calls += 1
        results = []
        for e in emails:
            if e.subscriber_id in self.always or self._random.random() < self.fraction:
                results.append(SendResult(e.message_id, "transient", detail="451 4.3.0 later"))
            else:
                self.accepted[e.message_id] += 1
                results.append(SendResult(e.message_id, "sent"))
        return results


def _service(tmp_path: Path, mailer: Mailer, clock: FakeClock, **options) -> SendService:
    documents = SqliteDocuments(tmp_path / "documents.sqlite3")
    bus = SqliteBus(tmp_path / "bus.sqlite3", clock=clock)
    return SendService(SendLedger(documents, lease_s=LEASE_S), Suppressions(documents, "k"),
                       mailer, Outbox(bus), clock, sleep=clock.sleep, **options)  # fmt: skip


def _batch(clock: FakeClock, n: int = 250) -> SendBatch:
    emails = campaign_emails(NAMES * (n // len(NAMES) + 1), start=0)[:n]
    return SendBatch("cmp-2-b0", MARKETING, clock(), emails, campaign_id="cmp-2")


def test_recipients_deferred_at_random_are_all_sent_within_one_delivery(tmp_path: Path) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    inner = DeferringMailer(0.2)
    mailer = RateLimitedMailer(inner, 200.0, clock, clock.sleep)
    batch = _batch(clock)
    started = clock()
    counts = _service(tmp_path, mailer, clock).handle(batch)  # no TransientError: no redelivery
    assert counts == {"sent": 250}
    assert sorted(inner.accepted) == sorted(e.message_id for e in batch.emails)
    assert set(inner.accepted.values()) == {1}
    assert mailer.rate == pytest.approx(200.0), "single deferrals do not slow the sender"
    assert clock() - started < 5, "retried soon"


def test_a_recipient_deferred_every_time_goes_back_to_the_bus_then_fails_with_its_reason(
    tmp_path: Path,
) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    batch = _batch(clock, 20)
    stuck = batch.emails[3].subscriber_id
    inner = DeferringMailer(0.0, always=frozenset({stuck}))
    service = _service(tmp_path, inner, clock, max_attempts=2)
    with pytest.raises(TransientError, match="1 recipients"):
        service.handle(batch)  # the other 19 sent; only the stuck one is handed back
    assert len(inner.accepted) == 19
    counts = service.handle(batch)  # the bus's last delivery: it fails for good
    assert counts == {"failed": 1}
    ledger = SendLedger(SqliteDocuments(tmp_path / "documents.sqlite3"))
    entry = ledger.get(batch.batch_id)
    assert entry is not None and entry.state == DONE
    assert entry.outcomes[stuck] == "failed" and entry.reasons[stuck] == "451 4.3.0 later"
    assert len(inner.accepted) == 19 and set(inner.accepted.values()) == {1}


def test_through_the_bench_s_faulty_sink_every_recipient_arrives_once(tmp_path: Path) -> None:
    """451 to 20 % of RCPTs and 421 to connections (the bench's fault run, small), with real
    time and the real SMTP client: nearly everything goes in the first delivery of a batch."""
    sink = FaultySink(tmp_path / "mail", free_port()).start()
    try:
        port = sink._controller.port
        mailer = RateLimitedMailer(SmtpMailer("127.0.0.1", port), 1_000.0)
        documents = SqliteDocuments(tmp_path / "documents.sqlite3")
        service = SendService(SendLedger(documents), Suppressions(documents, "k"), mailer,
                              Outbox(SqliteBus(tmp_path / "bus.sqlite3")), time.time)  # fmt: skip
        batches = [SendBatch(f"cmp-3-b{b}", MARKETING, time.time(),
                             campaign_emails(NAMES * 25, start=b * 150), campaign_id="cmp-3")
                   for b in range(2)]  # fmt: skip
        deliveries = 0
        for batch in batches:
            while True:  # the bus redelivers what is still deferred after the retry passes
                deliveries += 1
                try:
                    service.handle(batch)
                    break
                except TransientError:
                    assert deliveries < 6
        mailer.close()
    finally:
        faults = sink.stop()
    stored = Counter(
        str(m["Message-ID"]).strip("<>") for m in mailbox.Maildir(str(tmp_path / "mail"))
    )
    assert sorted(stored) == sorted(e.message_id for b in batches for e in b.emails)
    assert set(stored.values()) == {1}
    assert faults["rcpts_deferred_451"] >= 30 and faults["connections_refused_421"] >= 1
    assert deliveries <= 4
