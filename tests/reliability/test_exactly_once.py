"""Exactly-once proofs for campaigns: duplicate deliveries, a runner killed with SIGKILL
mid-campaign, pause and resume, and A/B tests (stable assignment, holdout, winner rule).

The duplicate bound after a kill: the send ledger checkpoints a batch's outcomes every
MAILPIPE_SEND_CHECKPOINT_EVERY messages (125), and the local runner has one send worker, so a
kill can resend at most that many messages, each with the Message-ID of its first copy.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from campaign_support import Pipeline, add_audience, rendered_batch
from support import REPO, FakeClock, RecordingMailer, free_port

from shared import bootstrap, topology
from shared.bootstrap import Container
from shared.domain.ab_test import AbTest
from shared.domain.errors import AlreadyProcessed, TransientError
from shared.domain.events import utc_iso
from shared.ports import OutgoingEmail, SendResult
from shared.runner.smtp_sink import SmtpSink
from shared.services.sending import SendService

HERE = Path(__file__).parent
DISPATCH = "dispatch-on-campaign-dispatch"
RENDER = "render-on-render-requests"
SEND = "send-on-send-requests"


class SlowMailer(RecordingMailer):
    """Records, and takes its time, so two deliveries of one batch overlap."""

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        time.sleep(0.05)
        return super().send(emails)


def received_by(mailer: RecordingMailer) -> Counter:
    return Counter(e.subscriber_id for e in mailer.sent)


# -- the same batch twice ----------------------------------------------------------------------


def test_a_batch_delivered_twice_in_a_row_is_sent_once(local, deliver, tmp_path):
    sink = SmtpSink(tmp_path / "mail", port=free_port()).start()
    try:
        container = Container(replace(local.settings, smtp_port=sink.port), clock=local.clock)
        bootstrap.install(container)
        batch = rendered_batch(container, 120, "dup:all:000001")
        first = deliver("send", batch.encode(), {"encoding": "zlib+json"})
        second = deliver("send", batch.encode(), {"encoding": "zlib+json"})
        assert first.status_code == 200 and second.status_code == 200
        assert sink.handler.received == 120
        recipients = Counter(str(m["To"]) for m in mailbox.Maildir(str(tmp_path / "mail")))
        assert len(recipients) == 120 and set(recipients.values()) == {1}
    finally:
        sink.stop()


def test_a_batch_delivered_twice_at_once_is_sent_once(local):
    batch = rendered_batch(local, 200, "dup:all:000001")
    slow = SlowMailer()
    service = SendService(local.ledger, local.suppressions, slow, local.outbox, local.clock)
    outcomes: list[object] = []

    def deliver() -> None:
        try:
            outcomes.append(service.handle(batch))
        except (TransientError, AlreadyProcessed) as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One delivery sent everything; the other found the batch leased (retry later) or done.
    assert sorted(type(o).__name__ for o in outcomes) in (
        ["TransientError", "dict"], ["AlreadyProcessed", "dict"]
    )  # fmt: skip
    with pytest.raises(AlreadyProcessed):
        service.handle(batch)  # the platform's redelivery of the loser
    assert len(slow.sent) == 200 and set(received_by(slow).values()) == {1}


# -- kill -9 mid-campaign ----------------------------------------------------------------------


def start_child(data_dir: Path, smtp_port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "campaign_child.py"), str(data_dir), str(smtp_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_kill_9_mid_campaign_then_restart_sends_everyone_once(tmp_path):
    sys.path.insert(0, str(HERE))
    from campaign_child import settings as child_settings

    audience = 2000
    data_dir = tmp_path / "var"
    sink = SmtpSink(tmp_path / "mail", port=free_port()).start()  # outlives the runner
    parent = Container(child_settings(data_dir, sink.port))
    # The most a kill can resend, with one send worker: the messages since the checkpoint.
    checkpoint = parent.settings.send_checkpoint_every
    bootstrap.install(parent)
    children: list[subprocess.Popen] = []
    try:
        people = add_audience(parent, audience)
        campaign = parent.campaign_service.create({"name": "Kill test", "template": "newsletter"})
        parent.campaign_service.send_now(campaign.id)

        children.append(start_child(data_dir, sink.port))
        # Between two checkpoints, so some sent messages are not checkpointed.
        mid_chunk = int(audience * 0.3) + checkpoint // 2
        wait_for(lambda: sink.handler.received >= mid_chunk, 120, "30% sent")
        children[0].send_signal(signal.SIGKILL)
        children[0].wait(10)
        at_kill = sink.handler.received
        assert at_kill < audience, "the campaign finished before the kill; use a bigger audience"

        children.append(start_child(data_dir, sink.port))
        wait_for(lambda: ledger_says_done(parent, campaign.id, audience), 180, "ledger done")
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(30)
        sink.stop()
        bootstrap.install(None)

    copies: dict[str, list[str]] = defaultdict(list)
    for message in mailbox.Maildir(str(tmp_path / "mail"), factory=None):
        parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
        copies[str(parsed["To"])].append(str(parsed["Message-ID"]))
    assert sorted(copies) == sorted(p.email for p in people)  # nobody missing, nobody else
    duplicates = sum(len(ids) - 1 for ids in copies.values())
    assert duplicates <= checkpoint, f"{duplicates} duplicates (killed at {at_kill})"
    assert all(len(set(ids)) == 1 for ids in copies.values())  # a duplicate has the same id


def ledger_says_done(container: Container, campaign_id: str, audience: int) -> bool:
    campaign = container.campaigns.get(campaign_id)
    delivery = container.campaign_service.delivery(campaign_id)
    return (
        campaign.status == "sent"
        and delivery.batches == delivery.done
        and delivery.outcomes.get("sent", 0) == audience
    )


# -- pause and resume --------------------------------------------------------------------------


def test_pause_then_resume_mid_campaign_skips_no_one_and_sends_no_one_twice(local, mailer):
    people = add_audience(local, 1050)
    service = local.campaign_service
    campaign = service.create({"name": "Pausing", "template": "newsletter"})
    service.send_now(campaign.id)
    pipeline = Pipeline(local)

    assert pipeline.step(DISPATCH, limit=1) == 1  # two pages, then a continuation message
    pipeline.step(RENDER)
    assert pipeline.step(SEND, limit=1) == 1
    assert len(mailer.sent) == 100
    service.pause(campaign.id)
    pipeline.drain()  # the continuation does nothing; the queued batch is parked

    paused = service.get(campaign.id)
    assert paused.status == "paused" and paused.progress["all"].page == 3  # cursor kept
    assert len(mailer.sent) == 100
    assert [batch for batch, _ in local.ledger.parked(campaign.id)] == [f"{campaign.id}:all:000002"]

    _, republished = service.resume(campaign.id)
    assert republished == 1
    pipeline.drain()
    assert service.get(campaign.id).status == "sent"
    got = received_by(mailer)
    assert sorted(got) == sorted(p.id for p in people) and set(got.values()) == {1}
    assert local.ledger.parked(campaign.id) == []


def test_pause_during_dispatch_and_a_duplicate_resume(local, mailer):
    people = add_audience(local, 700)
    service = local.campaign_service
    campaign = service.create({"name": "Pausing", "template": "newsletter"})
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.step(DISPATCH, limit=1)
    service.pause(campaign.id)
    pipeline.drain()
    assert len(mailer.sent) == 0  # every batch already queued was parked
    service.resume(campaign.id)
    pipeline.step(RENDER)  # the republished batches are queued twice if resume repeats:
    service.pause(campaign.id)
    service.resume(campaign.id)
    pipeline.drain()
    got = received_by(mailer)
    assert sorted(got) == sorted(p.id for p in people) and set(got.values()) == {1}


def test_the_sweep_rescues_batches_a_crashed_resume_left_parked(local, mailer, clock):
    people = add_audience(local, 400)
    service = local.campaign_service
    campaign = service.create({"name": "Rescue", "template": "newsletter"})
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.step(DISPATCH, limit=1)
    service.pause(campaign.id)
    pipeline.drain()
    assert len(local.ledger.parked(campaign.id)) == 2 and mailer.sent == []
    # The resume flips the status, then dies before republishing and kicking dispatch.
    clock.now += 1
    local.campaigns.change(campaign.id, lambda c: c.resume(clock(), "lost-token"))
    pipeline.sweep()
    pipeline.drain()
    assert mailer.sent == []  # within the grace period the sweep leaves them to the resume
    clock.now += 1000  # past the stall limit (900 s): dispatch and parked batches are rescued
    pipeline.sweep()
    pipeline.drain()
    got = received_by(mailer)
    assert sorted(got) == sorted(p.id for p in people) and set(got.values()) == {1}


def test_the_gate_trusts_its_cache_briefly_but_rereads_before_parking(local_settings):
    clock = FakeClock()
    container = Container(replace(local_settings, campaign_gate_ttl_s=3.0), clock=clock)
    bootstrap.install(container)
    add_audience(container, 1)
    campaign = container.campaign_service.create({"name": "Gate", "template": "newsletter"})
    container.campaign_service.send_now(campaign.id)
    gate = container.campaign_gate
    assert gate(campaign.id) == "send"
    container.campaign_service.pause(campaign.id)
    assert gate(campaign.id) == "send"  # cached for up to 3 s
    clock.now += 3.1
    assert gate(campaign.id) == "park"
    container.campaign_service.resume(campaign.id)
    assert gate(campaign.id) == "send"  # a cached "paused" is re-read before parking
    container.campaign_service.cancel(campaign.id)
    clock.now += 3.1
    assert gate(campaign.id) == "skip" and gate(None) == "send"


def test_a_cancelled_campaign_sends_nothing_more(local, mailer):
    add_audience(local, 300)
    service = local.campaign_service
    campaign = service.create({"name": "Cancel", "template": "newsletter"})
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.step(DISPATCH, limit=1)
    pipeline.step(RENDER)
    service.cancel(campaign.id)
    pipeline.drain()
    assert mailer.sent == []
    assert local.campaign_service.delivery(campaign.id).outcomes == {"skipped": 200}


# -- resend failed -----------------------------------------------------------------------------


class FlakyMailer(RecordingMailer):
    """Fails some recipients transiently every time, until `healed`."""

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self.failing = failing
        self.healed = False

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        ok = [e for e in emails if self.healed or e.subscriber_id not in self.failing]
        super().send(ok)
        return [SendResult(e.message_id, "sent" if e in ok else "transient", detail="451 later")
                for e in emails]  # fmt: skip


def test_resend_failed_reaches_the_failed_and_never_the_sent(local_settings):
    # Real time and a short ledger lease: a batch with transient failures is retried by the
    # bus once the lease of the delivery that failed has run out.
    settings = replace(local_settings, campaign_page_size=100, bus_max_attempts=20,
                       send_lease_s=0.05)  # fmt: skip
    container = Container(settings)
    bootstrap.install(container)
    people = add_audience(container, 250)
    flaky = FlakyMailer({p.id for p in people[::10]})
    # Pre-fill the cached property (as `overrides` does): give up after two attempts, as after
    # a long provider outage.
    container.__dict__["send"] = SendService(
        container.ledger, container.suppressions, flaky, container.outbox, container.clock,
        max_attempts=2, campaign_gate=container.campaign_gate,
    )  # fmt: skip
    service = container.campaign_service
    campaign = service.create({"name": "Flaky", "template": "newsletter"})
    service.send_now(campaign.id)
    Pipeline(container).drain()
    assert service.delivery(campaign.id).outcomes == {"sent": 225, "failed": 25}

    flaky.healed = True
    result = service.resend_failed(campaign.id)
    assert (result["resend"], result["recipients"]) == (1, 25)
    Pipeline(container).drain()
    got = received_by(flaky)
    assert len(got) == 250 and set(got.values()) == {1}
    assert service.resend_failed(campaign.id)["recipients"] == 0


# -- A/B ---------------------------------------------------------------------------------------

AB = {"variants": [{"name": "A"}, {"name": "B", "subject": "Subject B"}], "test_fraction": 0.4,
      "holdout_fraction": 0.1, "window_hours": 2, "min_sample": 50}  # fmt: skip


def test_ab_holdout_gets_nothing_and_assignment_survives_redelivery(local, mailer, clock):
    people = add_audience(local, 1000)
    service = local.campaign_service
    campaign = service.create({"name": "AB", "template": "newsletter", "ab": AB})
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.step(DISPATCH, limit=1)
    # A crash before the checkpoint: the same dispatch message is delivered again.
    local.dispatch.handle({"kind": "campaign", "campaign_id": campaign.id, "phase": "test",
                           "token": service.get(campaign.id).progress["test"].token})  # fmt: skip
    pipeline.drain()
    ab = AbTest.from_spec(AB)
    by_id = {p.id: p for p in people}
    assignments = {p.id: ab.assign(campaign.id, p.id) for p in people}
    test_phase = received_by(mailer)
    assert set(test_phase.values()) == {1}
    assert set(test_phase) == {i for i, a in assignments.items() if a.cohort == "test"}
    for sent in mailer.sent:
        variant = assignments[sent.subscriber_id].variant
        assert (sent.subject == "Subject B") == (variant == "B"), by_id[sent.subscriber_id]
    holdout = {i for i, a in assignments.items() if a.cohort == "holdout"}
    recorded = {s for e in local.ledger.of_campaign(campaign.id)
                for s, o in e.outcomes.items() if o == "holdout"}  # fmt: skip
    assert recorded == holdout and len(holdout) > 50

    pipeline.sweep()  # the test cohort is delivered: the window starts
    clock.now += 2 * 3600 + 1
    pipeline.sweep()
    pipeline.drain()
    everyone = received_by(mailer)
    assert set(everyone.values()) == {1}
    assert set(everyone) == set(by_id) - holdout  # the holdout never receives anything
    decided = service.get(campaign.id)
    assert decided.status == "sent" and decided.decision["source"] == "rule"
    shown = service.show(campaign.id)  # every recipient final, holdout included: "sent"
    assert shown["status"] == "sent" and shown["delivery"]["complete"], shown["delivery"]
    assert sum(shown["delivery"]["outcomes"].values()) == len(people)


def click(subscriber_id: str, campaign_id: str, at: float, machine: bool = False) -> dict:
    return {"event_id": f"click-{subscriber_id}-{machine}", "event_type": "click",
            "occurred_at": utc_iso(at), "subscriber_id": subscriber_id,
            "campaign_id": campaign_id, "is_machine": machine, "properties": {}}  # fmt: skip


def run_test_phase(container: Container, ab: dict, audience: int) -> tuple[str, Pipeline]:
    add_audience(container, audience)
    service = container.campaign_service
    campaign = service.create({"name": "AB", "template": "newsletter", "ab": ab})
    service.send_now(campaign.id)
    pipeline = Pipeline(container)
    pipeline.drain()
    assert service.get(campaign.id).awaits_window
    pipeline.sweep()
    assert service.get(campaign.id).test_ends_at == container.clock() + ab["window_hours"] * 3600
    return campaign.id, pipeline


def test_the_window_starts_only_once_the_test_cohort_is_delivered(local, mailer, clock):
    add_audience(local, 400)
    service = local.campaign_service
    campaign = service.create({"name": "AB", "template": "newsletter", "ab": AB})
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.drain(skip=[SEND])  # dispatched and rendered, nothing sent yet
    clock.now += 1800
    pipeline.sweep()
    waiting = service.get(campaign.id)
    assert waiting.awaits_window and waiting.winner is None
    pipeline.drain()
    pipeline.sweep()
    started = service.get(campaign.id)
    assert started.test_ends_at == clock.now + 2 * 3600 and started.winner is None


def test_the_winner_rule_picks_the_variant_that_really_won(local, mailer, clock):
    campaign_id, pipeline = run_test_phase(local, {**AB, "test_fraction": 0.9,
                                                   "holdout_fraction": 0.0}, 1200)  # fmt: skip
    variants = {e.subscriber_id: e.subject == "Subject B" for e in mailer.sent}
    a_ids = sorted(s for s, b in variants.items() if not b)
    b_ids = sorted(s for s, b in variants.items() if b)
    # B: 30% clicked; A: 10% clicked, plus machine clicks on A that must not count.
    clicks = [click(s, campaign_id, clock.now + 60) for s in b_ids[: len(b_ids) * 3 // 10]]
    clicks += [click(s, campaign_id, clock.now + 60) for s in a_ids[: len(a_ids) // 10]]
    clicks += [click(s, campaign_id, clock.now + 60, machine=True) for s in a_ids]
    local.warehouse.append(clicks)
    results = local.campaign_service.variant_results(local.campaigns.get(campaign_id))
    assert results["B"].converted == len(b_ids) * 3 // 10
    assert results["A"].converted == len(a_ids) // 10

    clock.now += 2 * 3600 + 1
    pipeline.sweep()
    decided = local.campaigns.get(campaign_id)
    assert decided.winner == "B" and decided.decision["significant"] is True
    assert decided.phase == "remainder"


def test_the_winner_rule_refuses_to_pick_on_too_small_a_sample(local, mailer, clock):
    campaign_id, pipeline = run_test_phase(local, {**AB, "min_sample": 500}, 600)
    b_ids = [e.subscriber_id for e in mailer.sent if e.subject == "Subject B"]
    local.warehouse.append([click(s, campaign_id, clock.now + 60) for s in b_ids])
    clock.now += 2 * 3600 + 1
    pipeline.sweep()
    decided = local.campaigns.get(campaign_id)
    assert decided.winner == "A" and decided.decision["significant"] is False
    assert "sample too small" in decided.decision["reason"]


def test_pick_winner_overrides_the_rule_before_the_window_ends(local, mailer, clock):
    campaign_id, pipeline = run_test_phase(local, AB, 500)
    local.campaign_service.pick_winner(campaign_id, "B")
    pipeline.drain()
    decided = local.campaigns.get(campaign_id)
    assert decided.status == "sent" and decided.decision["source"] == "manual"
    remainder = [e for e in mailer.sent if e.subscriber_id in remainder_ids(decided, 500, local)]
    assert remainder and all(e.subject == "Subject B" for e in remainder)


def remainder_ids(campaign, audience: int, container: Container) -> set[str]:
    ab = AbTest.from_spec(campaign.ab)
    ids = (container.subscribers.id_for(f"reader{i}@example.com") for i in range(audience))
    return {i for i in ids if ab.assign(campaign.id, i).cohort == "remainder"}


def test_topology_has_the_admin_function():
    assert topology.function("admin").route == "/admin" and not topology.function("admin").public


def test_a_delivery_whose_lease_was_taken_over_stops_and_leaves_the_new_owner_alone(tmp_path):
    from shared.adapters.local.sqlite_documents import SqliteDocuments
    from shared.repositories.send_ledger import DONE, LeaseLost, SendLedger

    ledger = SendLedger(SqliteDocuments(tmp_path / "docs.sqlite3"), lease_s=10)
    slow = ledger.claim("b1", "c1", "slow", now=0)
    ledger.checkpoint(slow, {"s1": "sent"}, now=5)  # still its lease: fine
    fresh = ledger.claim("b1", "c1", "fresh", now=100)  # the slow lease lapsed at 15
    with pytest.raises(LeaseLost):
        ledger.checkpoint(slow, {"s2": "sent"}, now=101)
    ledger.release(slow, now=102)  # must not free the fresh delivery's lease
    with pytest.raises(TransientError):
        ledger.claim("b1", "c1", "third", now=103)
    ledger.checkpoint(fresh, {"s2": "sent"}, now=104, state=DONE)
    assert ledger.get("b1").outcomes == {"s1": "sent", "s2": "sent"}
