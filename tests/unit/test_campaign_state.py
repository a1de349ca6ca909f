"""The campaign state machine, its dispatch bookkeeping and draft validation (pure domain)."""

from __future__ import annotations

import pytest

from shared.domain.campaign import (
    CANCELLED,
    DRAFT,
    PAUSED,
    PHASE_ALL,
    PHASE_REMAINDER,
    PHASE_TEST,
    SCHEDULED,
    SENDING,
    SENT,
    TESTING,
    Campaign,
    PageOutcome,
    batch_id,
    campaign_id_from_name,
    gate_decision,
    new_campaign,
    phase_of,
    variant_of,
)
from shared.domain.errors import Conflict, InvalidInput

NOW = 1_800_000_000.0
AB = {"variants": [{"name": "A"}, {"name": "B"}], "test_fraction": 0.2, "window_hours": 2}


def draft(**spec) -> Campaign:
    return new_campaign({"name": "Spring", "template": "newsletter", **spec}, "spring", NOW)


def sending(**spec) -> Campaign:
    campaign = draft(**spec)
    campaign.start(NOW, "t1")
    return campaign


# -- transitions -------------------------------------------------------------------------------


def test_the_happy_path_without_ab():
    campaign = draft()
    assert campaign.status == DRAFT
    campaign.schedule(NOW + 3600, NOW)
    assert campaign.status == SCHEDULED and campaign.is_due(NOW + 3600)
    assert not campaign.is_due(NOW + 3599)
    assert campaign.start(NOW + 3600, "t1") == PHASE_ALL
    assert campaign.status == SENDING and campaign.audience_at == NOW + 3600
    assert campaign.finish_phase(PHASE_ALL, NOW + 3700, "t2") is None
    assert campaign.status == SENT and campaign.finished_at == NOW + 3700
    assert [h["to"] for h in campaign.history] == [DRAFT, SCHEDULED, SENDING, SENT]


def test_ab_goes_through_testing_to_the_remainder():
    campaign = sending(ab=AB)
    assert campaign.phase == PHASE_TEST
    campaign.finish_phase(PHASE_TEST, NOW + 10, "t2")
    assert campaign.status == TESTING and campaign.awaits_window
    assert not campaign.needs_decision(NOW + 10**6)  # the window starts once delivered
    campaign.start_window(NOW + 20)
    assert campaign.test_ends_at == NOW + 20 + 7200 and not campaign.awaits_window
    assert not campaign.needs_decision(NOW + 7000)
    assert campaign.needs_decision(NOW + 7220)
    campaign.choose_winner("B", {"reason": "rule"}, NOW + 7210)
    assert campaign.start_remainder(NOW + 7210, "t3") == PHASE_REMAINDER
    assert campaign.status == SENDING and campaign.content("B") == ("newsletter", None)
    with pytest.raises(Conflict, match="already sending the remainder with B"):
        campaign.choose_winner("A", {}, NOW + 7300)


def test_a_winner_picked_during_the_test_phase_starts_the_remainder_right_after_it():
    campaign = sending(ab=AB)
    campaign.choose_winner("A", {"source": "manual"}, NOW + 1)
    assert campaign.finish_phase(PHASE_TEST, NOW + 2, "t2") == PHASE_REMAINDER
    assert campaign.status == SENDING and campaign.phase == PHASE_REMAINDER
    assert campaign.progress_of(PHASE_REMAINDER).token == "t2"


def test_pause_and_resume_return_where_it_was():
    campaign = sending()
    campaign.pause(NOW + 1)
    assert campaign.status == PAUSED and campaign.paused_from == SENDING
    assert campaign.resume(NOW + 2, "t9") == PHASE_ALL
    assert campaign.status == SENDING and campaign.progress_of(PHASE_ALL).token == "t9"
    scheduled = draft()
    scheduled.schedule(NOW + 60, NOW)
    scheduled.pause(NOW)
    assert scheduled.resume(NOW, "t") is None and scheduled.status == SCHEDULED


def test_a_phase_finishing_while_paused_resumes_into_the_next_state():
    campaign = sending()
    campaign.pause(NOW + 1)
    campaign.finish_phase(PHASE_ALL, NOW + 2, "t2")
    assert campaign.status == PAUSED and campaign.paused_from == SENT
    assert campaign.resume(NOW + 3, "t3") is None and campaign.status == SENT


def test_cancel_is_final():
    campaign = sending()
    campaign.cancel(NOW)
    assert campaign.status == CANCELLED
    for action in (lambda: campaign.pause(NOW), lambda: campaign.resume(NOW, "t"),
                   lambda: campaign.cancel(NOW), lambda: campaign.start(NOW, "t")):  # fmt: skip
        with pytest.raises(Conflict, match="it is cancelled"):
            action()
    assert campaign.finish_phase(PHASE_ALL, NOW, "t") is None
    assert campaign.status == CANCELLED


@pytest.mark.parametrize(
    ("make", "action", "message"),
    [
        (draft, lambda c: c.pause(NOW), "cannot pause campaign 'spring': it is draft"),
        (draft, lambda c: c.resume(NOW, "t"), "cannot resume campaign 'spring': it is draft"),
        (sending, lambda c: c.schedule(NOW + 9, NOW), "cannot schedule campaign 'spring'"),
        (sending, lambda c: c.start(NOW, "t"), "cannot send campaign 'spring': it is sending"),
        (sending, lambda c: c.choose_winner("A", {}, NOW), "has no A/B test"),
        (draft, lambda c: c.begin_resend(1, 1, NOW), "cannot resend failed recipients"),
    ],
)
def test_refused_transitions_say_why(make, action, message):
    campaign = make()
    before = campaign.to_doc()
    with pytest.raises(Conflict, match=message.replace("(", r"\(")):
        action(campaign)
    assert campaign.to_doc() == before


def test_scheduling_in_the_past_is_refused():
    with pytest.raises(InvalidInput, match="in the past; use `send`"):
        draft().schedule(NOW - 1, NOW)


def test_an_unknown_winner_is_refused():
    with pytest.raises(InvalidInput, match="no variant 'C'; variants are A, B"):
        sending(ab=AB).choose_winner("C", {}, NOW)


# -- dispatch bookkeeping ----------------------------------------------------------------------


def test_claim_honours_only_the_latest_token_and_one_live_lease():
    campaign = sending()
    assert not campaign.claim(PHASE_ALL, "stale", "me", NOW, 60)
    assert campaign.claim(PHASE_ALL, "t1", "me", NOW, 60)
    assert not campaign.claim(PHASE_ALL, "t1", "someone-else", NOW + 59, 60)
    assert campaign.claim(PHASE_ALL, "t1", "someone-else", NOW + 61, 60)  # the lease lapsed
    assert not campaign.claim(PHASE_REMAINDER, "t1", "me", NOW + 61, 60)


def test_pages_advance_only_for_the_lease_holder():
    campaign = sending()
    campaign.claim(PHASE_ALL, "t1", "me", NOW, 60)
    campaign.plan_page(PHASE_ALL, "me", "s0500", NOW, 60)
    campaign.page_done(PHASE_ALL, "me", PageOutcome(480, 0, 20, 1), "s1000", NOW, 60)
    progress = campaign.progress_of(PHASE_ALL)
    assert (progress.page, progress.cursor, progress.planned_end) == (2, "s0500", "s1000")
    assert (progress.recipients, progress.excluded, progress.batches) == (480, 20, 1)
    with pytest.raises(Conflict, match="taken over"):
        campaign.page_done(PHASE_ALL, "intruder", PageOutcome(), None, NOW, 60)


def test_a_phase_without_a_lease_or_progress_is_stalled():
    campaign = sending()
    assert not campaign.is_stalled(NOW + 10, stall_s=60)
    assert campaign.is_stalled(NOW + 61, stall_s=60)
    campaign.claim(PHASE_ALL, "t1", "me", NOW + 61, 300)
    assert not campaign.is_stalled(NOW + 200, stall_s=60)  # a live lease: someone is at it


def test_resends_are_numbered_and_an_unfinished_one_is_reused():
    campaign = sending()
    first = campaign.begin_resend(10, 1, NOW)
    assert first["n"] == 1 and first["state"] == "publishing"
    assert campaign.begin_resend(12, 1, NOW)["n"] == 1  # crashed before finishing: same resend
    campaign.finish_resend(1, 1, NOW)
    assert campaign.begin_resend(3, 1, NOW)["n"] == 2


# -- ids and the gate --------------------------------------------------------------------------


def test_batch_ids_are_deterministic_and_parseable():
    assert batch_id("spring", PHASE_ALL, 7) == "spring:all:000007"
    assert batch_id("spring", PHASE_TEST, 7, "B") == "spring:test:000007:B"
    assert phase_of("spring:test:000007:B.1.a") == PHASE_TEST
    assert variant_of("spring:test:000007:B.1.a") == "B"
    assert phase_of("tx-confirm-abc") is None and variant_of("spring:all:000001") is None


def test_the_gate_parks_paused_and_skips_cancelled_campaigns():
    assert [gate_decision(s) for s in (SENDING, SENT, PAUSED, CANCELLED, None)] == [
        "send", "send", "park", "skip", "send"
    ]  # fmt: skip


def test_ids_from_names_are_slugs():
    assert campaign_id_from_name("Été: 50% off!", "ab12cd") == "ete-50-off-ab12cd"
    assert campaign_id_from_name("!!!", "ab12cd") == "campaign-ab12cd"


# -- drafts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"template": "newsletter"}, "name", "name is required"),
        ({"name": "x", "template": "../secrets"}, "template", "must name an email template"),
        ({"name": "x", "template": "n", "segment": {"tag": ""}}, "segment", "segment.tag"),
        ({"name": "x", "template": "n", "ab": {"variants": []}}, "ab", "ab.variants"),
        ({"name": "x", "template": "n", "context": {"email": "x"}}, "context", "may not set email"),
        ({"name": "x", "template": "n", "track_opens": "yes"}, "track_opens", "true or false"),
        ({"name": "x", "template": "n", "colour": "red"}, "colour", "unknown campaign field"),
        ({"name": "x", "template": "n", "ab": {**AB, "variants": [{"name": "A"},
          {"name": "B", "template": "a/b"}]}}, "ab.variants[1].template", "must name an email"),
    ],
)  # fmt: skip
def test_drafts_are_validated(spec, field, message):
    with pytest.raises(InvalidInput) as caught:
        new_campaign(spec, "spring", NOW)
    assert message in str(caught.value) and caught.value.field == field


def test_campaign_ids_are_checked():
    with pytest.raises(InvalidInput, match="id must be"):
        new_campaign({"name": "x", "template": "n"}, "Has:Colon", NOW)


def test_documents_round_trip():
    campaign = sending(ab=AB)
    campaign.claim(PHASE_TEST, "t1", "me", NOW, 60)
    assert Campaign.from_doc(campaign.to_doc()) == campaign
