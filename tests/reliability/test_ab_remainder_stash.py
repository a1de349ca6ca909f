"""An A/B campaign reads its audience once: the test phase stashes each page's remainder members
and the remainder phase dispatches from that stash (shared/repositories/remainder_stash.py).

These campaigns start with MAILPIPE_AUDIENCE_SOURCE=documents: the route campaigns started before
the audience snapshot existed keep while they finish (new campaigns walk a snapshot instead:
tests/reliability/test_audience_snapshot.py proves the same for them).

Driven in-process through the real local pipeline (SQLite documents and bus, the functions via
functions-framework, DuckDB warehouse) with a fake clock, a recording mailer and the operation
meter that prices the benchmark.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest
from campaign_support import Pipeline, add_audience, lose_a_confirmation

from shared import bootstrap, topology
from shared.bootstrap import Container
from shared.domain.ab_test import AbTest
from shared.domain.messages import RenderRequest
from shared.ports import OutboundMessage, Publisher
from shared.repositories import remainder_stash
from shared.services.publishing import Outbox

DISPATCH = "dispatch-on-campaign-dispatch"


@pytest.fixture
def local(local: Container) -> Iterator[Container]:
    """The reliability container, its campaigns started on the subscriber documents' route."""
    settings = replace(local.settings, audience_source="documents")
    container = Container(settings, meter=local.meter, clock=local.clock,
                          overrides={"mailer": local.mailer})  # fmt: skip
    bootstrap.install(container)
    yield container
    bootstrap.install(local)


STASH = remainder_stash.COLLECTION
AB = {"variants": [{"name": "A"}, {"name": "B", "subject": "Subject B"}], "test_fraction": 0.4,
      "holdout_fraction": 0.1, "window_hours": 2, "min_sample": 50}  # fmt: skip
PARIS_ONLY = {"attribute": "city", "value": "Paris"}


def city(i: int) -> dict:
    return {"attributes": {"city": "Oslo" if i % 5 == 0 else "Paris"}}


def start_test_phase(container: Container, audience: int, **spec) -> tuple[str, Pipeline]:
    """An A/B campaign to `audience` readers (every fifth in Oslo, the rest in Paris) with
    its test phase dispatched and delivered and the window started."""
    add_audience(container, audience, make=city)
    service = container.campaign_service
    campaign = service.create({"name": "Stash", "template": "newsletter", "ab": AB, **spec})
    service.send_now(campaign.id)
    pipeline = Pipeline(container)
    pipeline.drain()
    pipeline.sweep()
    assert service.get(campaign.id).test_ends_at is not None
    return campaign.id, pipeline


def cohorts(container: Container, campaign_id: str, audience: int) -> dict[str, str]:
    """Subscriber id -> holdout | test | remainder."""
    ab = AbTest.from_spec(AB)
    ids = (container.subscribers.id_for(f"reader{i}@example.com") for i in range(audience))
    return {i: ab.assign(campaign_id, i).cohort for i in ids}


def parisians(container: Container, audience: int) -> set[str]:
    return {container.subscribers.id_for(f"reader{i}@example.com")
            for i in range(audience) if i % 5}  # fmt: skip


def stash_docs(container: Container) -> list[tuple[str, dict]]:
    return container.documents.query(STASH, limit=10_000)


def reads(container: Container) -> int:
    tally = container.meter.snapshot().get("firestore.read")
    return tally.operations if tally else 0


def test_the_remainder_reads_one_stash_page_per_page_and_mails_exactly_the_remainder(local, mailer):
    campaign_id, pipeline = start_test_phase(local, 1000, segment=PARIS_ONLY)
    cohort = cohorts(local, campaign_id, 1000)
    eligible = parisians(local, 1000)
    expected_remainder = {i for i in eligible if cohort[i] == "remainder"}
    stashed = stash_docs(local)
    assert len(stashed) == 10  # one per test page of 100 (segment and cohort already applied)
    assert {m for _, d in stashed for m in d["subscriber_ids"]} == expected_remainder
    # The send stage re-checks suppressions since audience_at: no later than the stash's read.
    audience_at = local.campaigns.get(campaign_id).audience_at
    assert all(audience_at <= d["written_at"] for _, d in stashed)
    test_mail = Counter(e.subscriber_id for e in mailer.sent)

    local.meter.reset()
    local.campaign_service.pick_winner(campaign_id, "B")
    pipeline.drain(skip=[s for s in pipeline.deliverers if s != DISPATCH])  # dispatch only
    dispatch_reads = reads(local)
    # Per page (10): the look-ahead query and the checkpoint. Per invocation (5, two pages
    # each): the claim, the first or re-read planned page, the hand-over or finish. Once: the
    # pick, the first page's plan and the purge. Walking the subscribers instead costs one read
    # per subscriber: 1,000 here.
    assert dispatch_reads <= 2 * 10 + 3 * 5 + 3, dispatch_reads
    assert len(expected_remainder) > 5 * dispatch_reads  # reads per page, not per person

    pipeline.drain()
    batches = [e for e in local.ledger.of_campaign(campaign_id) if ":remainder:" in e.batch_id]
    assert batches and all(e.state == "done" for e in batches)
    everyone = Counter(e.subscriber_id for e in mailer.sent)
    assert set(everyone.values()) == {1}
    subjects = {e.subscriber_id: e.subject for e in mailer.sent}
    got_remainder = set(everyone) - set(test_mail)
    assert got_remainder == expected_remainder
    assert all(subjects[i] == "Subject B" for i in got_remainder)
    assert set(test_mail) == {i for i in eligible if cohort[i] == "test"}
    assert not {i for i, c in cohort.items() if c == "holdout"} & set(everyone)
    campaign = local.campaigns.get(campaign_id)
    assert campaign.status == "sent" and campaign.progress["remainder"].recipients == len(
        expected_remainder
    )
    assert stash_docs(local) == []  # deleted page by page once dispatched


def test_a_campaign_started_before_the_stash_reads_the_audience_again(local, mailer, clock):
    """The migration path: a campaign whose test phase wrote no stash (flag false)."""
    add_audience(local, 300)
    service = local.campaign_service
    campaign = service.create({"name": "Legacy", "template": "newsletter", "ab": AB})
    service.send_now(campaign.id)
    local.campaigns.change(campaign.id, lambda c: setattr(c, "remainder_stashed", False))
    pipeline = Pipeline(local)
    pipeline.drain()
    pipeline.sweep()
    assert stash_docs(local) == []
    local.meter.reset()
    service.pick_winner(campaign.id, "B")
    pipeline.drain(skip=[s for s in pipeline.deliverers if s != DISPATCH])
    assert reads(local) >= 300  # every subscriber document again
    pipeline.drain()
    cohort = cohorts(local, campaign.id, 300)
    everyone = Counter(e.subscriber_id for e in mailer.sent)
    assert set(everyone.values()) == {1}
    assert set(everyone) == {i for i, c in cohort.items() if c != "holdout"}


def test_a_lost_publish_confirmation_replays_the_page_under_the_same_batch_ids(
    local, mailer, clock
):
    campaign_id, pipeline = start_test_phase(local, 600)
    flaky = lose_a_confirmation(local, f"{campaign_id}:remainder:000002")
    local.campaign_service.pick_winner(campaign_id, "B")
    kick_token = local.campaigns.get(campaign_id).progress["remainder"].token

    pipeline.drain()  # page 2's publish raises: the dispatch fails, its retry finds the lease
    assert flaky.tripped and local.campaigns.get(campaign_id).status == "sending"
    clock.now += 1000  # past the lease and the stall limit: the sweep restarts the phase
    pipeline.sweep()
    pipeline.drain()
    # A duplicated (stale) copy of the first remainder message does nothing.
    local.dispatch.handle({"kind": "campaign", "campaign_id": campaign_id,
                           "phase": "remainder", "token": kick_token})  # fmt: skip
    pipeline.drain()

    remainder = {b: n for b, n in flaky.batch_ids.items() if ":remainder:" in b}
    assert remainder[f"{campaign_id}:remainder:000002"] == 2  # the replay: same id
    assert sorted(remainder) == [f"{campaign_id}:remainder:{p:06d}" for p in range(1, 7)]
    assert all(n == 1 for b, n in remainder.items() if not b.endswith(":000002"))
    cohort = cohorts(local, campaign_id, 600)
    everyone = Counter(e.subscriber_id for e in mailer.sent)
    assert set(everyone.values()) == {1}
    assert set(everyone) == {i for i, c in cohort.items() if c != "holdout"}
    assert local.campaigns.get(campaign_id).status == "sent" and stash_docs(local) == []


def test_people_who_unsubscribe_or_are_erased_between_the_phases_are_not_mailed(
    local, mailer, clock
):
    campaign_id, pipeline = start_test_phase(local, 400)
    cohort = cohorts(local, campaign_id, 400)
    leaving, erased, *_ = sorted(i for i, c in cohort.items() if c == "remainder")
    erased_email = local.subscribers.find(erased).email
    clock.now += 60
    local.unsubscribe.unsubscribe_subscriber(leaving, "test")
    [entry] = local.gdpr.export(erased_email)["campaign_remainders"]
    assert (entry["campaign_id"], entry["email"]) == (campaign_id, erased_email)
    assert local.gdpr.erase(erased_email)["remainder_entries_erased"] == 1
    assert local.gdpr.export(erased_email)["campaign_remainders"] == []
    assert not any(erased in d["subscriber_ids"] or erased_email in json.dumps(d)
                   for _, d in stash_docs(local))  # fmt: skip
    assert any(leaving in d["subscriber_ids"] for _, d in stash_docs(local))

    local.campaign_service.pick_winner(campaign_id, "B")
    pipeline.drain()
    mailed = {e.subscriber_id for e in mailer.sent}
    assert leaving not in mailed and erased not in mailed
    assert mailed == {i for i, c in cohort.items() if c != "holdout"} - {leaving, erased}
    outcomes = {s: o for e in local.ledger.of_campaign(campaign_id) for s, o in e.outcomes.items()}
    assert outcomes[leaving] == "suppressed"  # dropped by the send stage's suppression check


def test_cancelling_a_campaign_in_its_test_window_deletes_the_stash(local):
    campaign_id, _ = start_test_phase(local, 300)
    assert len(stash_docs(local)) == 3
    local.campaign_service.cancel(campaign_id)
    assert stash_docs(local) == []


class CancelsMidPage:
    """The Publisher port, plus a campaign cancelled by someone else the moment the first test
    batch goes out, after the page was stashed: the cancel's own purge ran before (the
    status change alone is made here), so only the dispatcher can still delete that page."""

    def __init__(self, real: Publisher, container: Container) -> None:
        self.real = real
        self.container = container

    def publish(self, topic: str, messages: Sequence[OutboundMessage]) -> list[str]:
        ids = self.real.publish(topic, messages)
        if topic == topology.RENDER_REQUESTS:
            campaign_id = RenderRequest.decode(messages[0].data).campaign_id
            now = self.container.clock()
            self.container.campaigns.change(campaign_id, lambda c: c.cancel(now))
        return ids


def test_a_cancel_racing_the_test_dispatch_leaves_no_stash(local, mailer):
    add_audience(local, 300)
    racing = CancelsMidPage(local.bus, local)
    local.__dict__["publisher"] = racing
    local.__dict__["outbox"] = Outbox(racing)
    service = local.campaign_service
    campaign = service.create({"name": "Race", "template": "newsletter", "ab": AB})
    service.send_now(campaign.id)
    Pipeline(local).step(DISPATCH, limit=1)
    cancelled = local.campaigns.get(campaign.id)
    assert cancelled.status == "cancelled" and cancelled.progress["test"].page == 2
    assert stash_docs(local) == []
