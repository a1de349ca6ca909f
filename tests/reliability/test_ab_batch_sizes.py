"""What an A/B campaign costs per email (issue 13: ≤ $0.25 per million with an A/B test).

Its test phase sends each variant a small share of every page: with batches cut per page, a
variant's share of a 500-member chunk is ~50 recipients, split further into parts sized for the
whole page, so every batch held a few dozen people, and every batch costs the same render and
send invocations, Pub/Sub messages and ledger document whatever it holds. Now a test-phase page
spans as many snapshot chunks as fill one batch per variant, and a group is split by its own
expected size. Counted with the operation meter the benchmark prices, on the local stores and
bus, with the functions driven through functions-framework; every recipient still gets exactly
one message, of the variant the hash assigns.
"""

from __future__ import annotations

from collections import Counter

from campaign_support import Pipeline, add_audience, lose_a_confirmation

from shared.bootstrap import Container
from shared.domain.ab_test import AbTest
from shared.domain.campaign import phase_of

AB = {"variants": [{"name": "A"}, {"name": "B", "subject": "Subject B"}], "test_fraction": 0.2,
      "window_hours": 1, "min_sample": 10}  # fmt: skip
AUDIENCE = 1000  # ten chunks of 100 (the reliability fixture's page size)


def count(container: Container, name: str) -> int:
    tally = container.meter.snapshot().get(name)
    return tally.operations if tally else 0


def batches_of_test_phase(container: Container, campaign_id: str) -> dict[str, int]:
    """Test-phase ledger documents (one per send batch) -> recipients in each."""
    entries = container.ledger.of_campaign(campaign_id)
    return {e.batch_id: len(e.outcomes) for e in entries if phase_of(e.batch_id) == "test"}


def test_the_test_phase_sends_full_batches_with_the_operations_of_a_plain_send(local, mailer):
    add_audience(local, AUDIENCE)
    campaign = local.campaign_service.create({"name": "Sized", "template": "newsletter",
                                              "ab": AB})  # fmt: skip
    local.meter.reset()
    local.campaign_service.send_now(campaign.id)
    Pipeline(local).drain()
    ledger_reads = count(local, "firestore.read@send_ledger")

    batches = batches_of_test_phase(local, campaign.id)
    # ~200 test recipients, ~100 per variant: one batch per variant for the ten chunks, where
    # pages of one chunk made twenty batches of ~10 (and as many ledger documents).
    assert len(batches) == 2, batches
    assert sum(batches.values()) == len(mailer.sent) > 150
    # One render request and one send batch per variant: the render and send invocations.
    assert count(local, "pubsub.billable_bytes@publish:render-requests") == 2
    assert count(local, "pubsub.billable_bytes@publish:send-requests") == 2
    # Per batch a claim and one checkpoint per chunk sent (the old sizes: 40 writes).
    every = local.settings.send_checkpoint_every
    checkpoints = sum(-(-n // every) for n in batches.values())
    assert count(local, "firestore.write@send_ledger") == len(batches) + checkpoints
    assert ledger_reads == checkpoints

    ab = AbTest.from_spec(AB)
    for email in mailer.sent:
        assignment = ab.assign(campaign.id, email.subscriber_id)
        assert assignment.cohort == "test"
        assert (email.subject == "Subject B") == (assignment.variant == "B")
    assert set(Counter(e.subscriber_id for e in mailer.sent).values()) == {1}


def test_a_replayed_test_page_of_several_chunks_keeps_its_batch_ids(local, mailer, clock):
    add_audience(local, AUDIENCE)
    campaign = local.campaign_service.create({"name": "Replay", "template": "newsletter",
                                              "ab": AB})  # fmt: skip
    flaky = lose_a_confirmation(local, f"{campaign.id}:test:000001")
    local.campaign_service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.drain()
    assert flaky.tripped
    clock.now += 1000  # past the lease and the stall limit: the sweep restarts the phase
    pipeline.sweep()
    pipeline.drain()

    published = {b: n for b, n in flaky.batch_ids.items() if ":test:" in b}
    assert published == {f"{campaign.id}:test:000001:A": 2, f"{campaign.id}:test:000001:B": 2}
    sent = Counter(e.subscriber_id for e in mailer.sent)
    ab = AbTest.from_spec(AB)
    tested = {s.id for s in local.audience_pages.page(None, until="~")
              if ab.assign(campaign.id, s.id).cohort == "test"}  # fmt: skip
    assert set(sent) == tested and set(sent.values()) == {1}


def test_a_preview_reads_a_few_subscribers_not_a_page(local):
    add_audience(local, AUDIENCE)
    campaign = local.campaign_service.create({"name": "Look", "template": "newsletter"})
    local.meter.reset()
    report = local.campaign_service.preview(campaign.id)
    assert report.ok and len(audience_samples(report.samples)) == 3
    assert count(local, "firestore.read@subscribers") <= 10


def test_a_preview_of_a_narrow_segment_still_looks_as_far_as_three_pages(local):
    # Three in 300 (the fixture's pages are 100): the old three pages' reach, in smaller looks.
    add_audience(local, 300, make=lambda i: {"attributes": {"rare": i in (5, 150, 290)}})
    campaign = local.campaign_service.create(
        {"name": "Rare", "template": "newsletter", "segment": {"attribute": "rare", "value": True}}
    )
    report = local.campaign_service.preview(campaign.id)
    assert len(audience_samples(report.samples)) == 3, report.samples


def audience_samples(labels: list[str]) -> list[str]:
    return [label for label in labels if not label.startswith("synthetic")]


def test_a_batch_costs_its_claim_and_one_ledger_checkpoint_per_125_messages(local, mailer):
    add_audience(local, 1000)  # ten pages of 100: ten batches of 100
    campaign = local.campaign_service.create({"name": "Plain", "template": "newsletter"})
    local.meter.reset()
    local.campaign_service.send_now(campaign.id)
    Pipeline(local).drain()
    writes, reads = (count(local, f"firestore.{op}@send_ledger") for op in ("write", "read"))

    assert local.settings.send_checkpoint_every == 125
    assert len(mailer.sent) == len({e.subscriber_id for e in mailer.sent}) == 1000
    # A claim (one write) and one checkpoint (a read and a write) per batch of 100, where
    # checkpoints every 50 messages took two: 30 writes and 20 reads.
    assert (writes, reads) == (20, 10)
