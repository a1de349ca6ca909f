"""The send stage's analytics: one message per delivery, nothing lost when a delivery dies
after recording outcomes, and nothing reported twice when a delivery ends normally."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from campaign_support import rendered_batch
from support import FakeClock, RecordingMailer

from shared import topology
from shared.bootstrap import Container
from shared.domain.errors import TransientError
from shared.domain.events import SEND, decode_events
from shared.ports import OutboundMessage, OutgoingEmail, Publisher, SendResult
from shared.services.publishing import Outbox
from shared.services.sending import SendService
from shared.settings import Settings

WAREHOUSE = topology.subscriptions_of(topology.ANALYTICS_EVENTS)[0].name


def analytics_messages(container: Container) -> list[list[tuple[str, str | None]]]:
    """Each analytics message waiting for the warehouse, as (event type, message id) pairs."""
    deliveries = container.bus.pull(WAREHOUSE, 100, lease_s=0.001)
    return [[(e.event_type, e.message_id) for e in decode_events(d.data)] for d in deliveries]


def test_a_delivery_reports_all_its_sends_in_one_message(local: Container) -> None:
    batch = rendered_batch(local, 120, "analytics:all:000001")

    assert local.send.handle(batch) == {"sent": 120}

    (message,) = analytics_messages(local)
    assert sorted(message) == sorted((SEND, e.message_id) for e in batch.emails)


def test_sends_recorded_by_a_delivery_that_died_are_reported_by_the_next(
    local: Container, mailer: RecordingMailer, clock: FakeClock
) -> None:
    batch = rendered_batch(local, 120, "analytics:all:000001")
    first_chunk = batch.emails[:50]
    # The dying delivery sent and recorded one chunk, then was killed before reporting it.
    dead = local.ledger.claim(batch.batch_id, None, "dead-delivery", clock())
    local.ledger.checkpoint(dead, {e.subscriber_id: "sent" for e in first_chunk}, clock())
    clock.now += local.settings.send_lease_s + 1  # its lease lapses

    assert local.send.handle(batch) == {"sent": 70}

    assert {e.subscriber_id for e in mailer.sent} == {e.subscriber_id for e in batch.emails[50:]}
    reported = Counter(pair for message in analytics_messages(local) for pair in message)
    assert reported == Counter((SEND, e.message_id) for e in batch.emails)


class FlakyMailer(RecordingMailer):
    """Refuses the recipients in `refuse` transiently, once each."""

    def __init__(self, refuse: set[str]) -> None:
        super().__init__()
        self.refuse = set(refuse)

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        accepted = [e for e in emails if e.recipient not in self.refuse]
        super().send(accepted)
        results = [
            SendResult(e.message_id, "transient", detail="try later")
            if e.recipient in self.refuse
            else SendResult(e.message_id, "sent", e.message_id)
            for e in emails
        ]
        self.refuse -= {e.recipient for e in emails}
        return results


def test_a_retried_delivery_reports_only_what_it_sent_itself(local_settings: Settings) -> None:
    flaky = FlakyMailer(set())
    container = Container(local_settings, clock=FakeClock(), overrides={"mailer": flaky})
    # No retry passes within the delivery: the refused are left to a redelivery.
    container.__dict__["send"] = SendService(
        container.ledger,
        container.suppressions,
        flaky,
        container.outbox,
        container.clock,
        retry_delays_s=(),
    )
    batch = rendered_batch(container, 60, "analytics:all:000001")
    flaky.refuse = {e.recipient for e in batch.emails[::3]}

    with pytest.raises(TransientError):  # the refused third is retried by a redelivery
        container.send.handle(batch)
    assert container.send.handle(batch) == {"sent": 20}

    first, second = analytics_messages(container)
    assert len(first) == 40 and len(second) == 20
    assert sorted(first + second) == sorted((SEND, e.message_id) for e in batch.emails)
    assert sorted(e.subscriber_id for e in flaky.sent) == sorted(
        e.subscriber_id for e in batch.emails
    )


class BrokenAfterFirstChunk(RecordingMailer):
    """Sends the first chunk, then fails with something no retry rule names (a bug)."""

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        if self.sent:
            raise RuntimeError("a bug in the provider adapter")
        return super().send(emails)


def test_an_unexpected_failure_still_reports_what_was_sent(local_settings: Settings) -> None:
    mailer = BrokenAfterFirstChunk()
    container = Container(local_settings, clock=FakeClock(), overrides={"mailer": mailer})
    batch = rendered_batch(container, 200, "analytics:all:000001")

    with pytest.raises(RuntimeError):  # redelivered, finally dead-lettered
        container.send.handle(batch)

    (message,) = analytics_messages(container)
    assert sorted(message) == sorted((SEND, e.message_id) for e in mailer.sent)
    assert len(mailer.sent) == local_settings.send_checkpoint_every == 125


def test_a_batch_costs_a_ledger_write_per_chunk_and_one_to_claim_it(local: Container) -> None:
    batch = rendered_batch(local, 300, "analytics:all:000001")
    local.meter.reset()

    assert local.send.handle(batch) == {"sent": 300}

    # claim + one checkpoint per chunk of 125 (MAILPIPE_SEND_CHECKPOINT_EVERY; the third one
    # marks the batch done); the first claim creates the document without reading it, each
    # checkpoint reads it (the lease)
    tallies = local.meter.snapshot()
    assert tallies["firestore.write@send_ledger"].operations == 4
    assert tallies["firestore.read@send_ledger"].operations == 3
    entry = local.ledger.get(batch.batch_id)
    assert entry is not None and entry.state == "done"
    assert all(entry.is_final(e.subscriber_id) for e in batch.emails)
    (message,) = analytics_messages(local)
    assert sorted(message) == sorted((SEND, e.message_id) for e in batch.emails)


class Killed(BaseException):
    """The process dies (kill -9): nothing after it runs, no handler catches it."""


class DiesAfterReporting:
    """Publishes, then kills the process right after the first analytics message."""

    def __init__(self, real: Publisher) -> None:
        self.real = real

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        ids = self.real.publish(topic, messages)
        if topic == topology.ANALYTICS_EVENTS:
            raise Killed()
        return ids


def test_a_crash_between_the_report_and_the_last_write_resends_only_the_last_chunk(
    local: Container, mailer: RecordingMailer, clock: FakeClock
) -> None:
    batch = rendered_batch(local, 120, "analytics:all:000001")
    dying = SendService(local.ledger, local.suppressions, mailer,
                        Outbox(DiesAfterReporting(local.bus)), local.clock)  # fmt: skip
    with pytest.raises(Killed):
        dying.handle(batch)
    assert local.ledger.get(batch.batch_id).state == "open"  # the done write never happened
    clock.now += local.settings.send_lease_s + 1  # its lease lapses

    assert local.send.handle(batch) == {"sent": 20}  # the last chunk, unrecorded, again

    sent = Counter(e.message_id for e in mailer.sent)
    assert set(sent) == {e.message_id for e in batch.emails}
    assert sorted(sent.values()) == [1] * 100 + [2] * 20  # same Message-IDs
    entry = local.ledger.get(batch.batch_id)
    assert entry.state == "done" and all(entry.is_final(e.subscriber_id) for e in batch.emails)
    reported = [pair for message in analytics_messages(local) for pair in message]
    assert set(reported) == {(SEND, e.message_id) for e in batch.emails}  # repeats: same ids
