"""Batch ids of a dispatched page depend on who a recipient is, not on how many others the page
holds, so a page replayed after someone left the audience cannot mail anyone twice."""

from __future__ import annotations

from shared.domain.campaign import new_campaign
from shared.domain.messages import Recipient
from shared.services.audience import page_requests

CAMPAIGN = new_campaign({"name": "Batches", "template": "newsletter"}, "batches", 1.7e9)


def recipients(n: int) -> list[Recipient]:
    return [Recipient(f"s{i:05d}", f"r{i}@example.com") for i in range(n)]


def batch_of(requests) -> dict[str, str]:
    return {r.subscriber_id: req.batch_id for req in requests for r in req.recipients}


def test_every_recipient_in_exactly_one_batch_of_bounded_size():
    requests = page_requests(CAMPAIGN, "all", 3, {None: recipients(500)}, 250, 500)
    placed = batch_of(requests)
    assert len(placed) == 500
    assert {r.batch_id for r in requests} == {"batches:all:000003.1", "batches:all:000003.2"}
    assert all(len(r.recipients) < 320 for r in requests)


def test_a_replayed_page_keeps_each_remaining_recipients_batch():
    everyone = recipients(260)  # two parts either way: more or fewer than one batch's worth
    first = batch_of(page_requests(CAMPAIGN, "all", 1, {None: everyone}, 250, 500))
    fewer = [r for r in everyone if r.subscriber_id not in {"s00003", "s00100", "s00200"}]
    replay = batch_of(page_requests(CAMPAIGN, "all", 1, {None: fewer[:240]}, 250, 500))
    assert all(first[sid] == batch for sid, batch in replay.items())


def test_one_part_when_a_page_fits_one_batch():
    requests = page_requests(CAMPAIGN, "all", 1, {None: recipients(40)}, 250, 200)
    assert [r.batch_id for r in requests] == ["batches:all:000001"]
