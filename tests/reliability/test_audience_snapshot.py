"""A campaign reads only its audience: selected once by SQL over the warehouse's subscriber
mirror as of its audience time, written as chunk files, and walked by every phase
(shared/services/audience_snapshot.py). An A/B remainder picks its cohort from the same
snapshot, so nothing is stashed; who changed between the snapshot and the send is re-checked at
send time with one warehouse query per batch (shared/services/audience_recheck.py).

Driven in-process through the real local pipeline (SQLite documents and bus, the functions via
functions-framework, DuckDB warehouse, the filesystem blob store) with a fake clock, a recording
mailer and the operation meter that prices the benchmark.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from campaign_support import Pipeline, add_audience, installed, lose_a_confirmation, mirror_now
from click.testing import CliRunner

from shared.bootstrap import Container
from shared.cli.cmd_campaign import campaign as campaign_cli
from shared.dashboard.app import create_dashboard_app
from shared.domain.ab_test import AbTest
from shared.repositories import audience_rechecks as rechecks
from shared.repositories import remainder_stash
from shared.repositories.audience_rechecks import AudienceRechecks
from shared.repositories.audience_snapshots import PREFIX
from shared.services.audience_recheck import AudienceRecheck

DISPATCH = "dispatch-on-campaign-dispatch"
AB = {"variants": [{"name": "A"}, {"name": "B", "subject": "Subject B"}], "test_fraction": 0.4,
      "holdout_fraction": 0.1, "window_hours": 2, "min_sample": 50}  # fmt: skip
PARIS_ONLY = {"attribute": "city", "value": "Paris"}


def city(i: int) -> dict:
    return {"attributes": {"city": "Oslo" if i % 5 == 0 else "Paris"}}


def cohorts(container: Container, campaign_id: str, audience: int) -> dict[str, str]:
    ab = AbTest.from_spec(AB)
    ids = (container.subscribers.id_for(f"reader{i}@example.com") for i in range(audience))
    return {i: ab.assign(campaign_id, i).cohort for i in ids}


def parisians(container: Container, audience: int) -> set[str]:
    return {container.subscribers.id_for(f"reader{i}@example.com")
            for i in range(audience) if i % 5}  # fmt: skip


def reads(container: Container) -> int:
    tally = container.meter.snapshot().get("firestore.read")
    return tally.operations if tally else 0


def stash_docs(container: Container) -> list[tuple[str, dict]]:
    return container.documents.query(remainder_stash.COLLECTION, limit=10_000)


def snapshot_files(container: Container, campaign_id: str) -> list[str]:
    return container.import_blobs.list(f"{PREFIX}/{campaign_id}/")


def test_an_ab_campaign_reads_its_audience_once_and_stashes_nothing(local, mailer):
    add_audience(local, 1000, make=city)
    service = local.campaign_service
    campaign = service.create({"name": "Snap", "template": "newsletter", "ab": AB,
                               "segment": PARIS_ONLY})  # fmt: skip
    local.meter.reset()
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.drain()
    pipeline.sweep()
    assert local.campaigns.get(campaign.id).audience_snapshot
    # 800 Parisians in files of four pages of 100 (PAGES_PER_FILE), then the manifest.
    assert len(snapshot_files(local, campaign.id)) == 3
    test_reads = reads(local)
    # Campaign, ledger and suppression documents; walking the subscribers would add 1,000.
    assert test_reads < 400, test_reads

    cohort = cohorts(local, campaign.id, 1000)
    eligible = parisians(local, 1000)
    test_mail = Counter(e.subscriber_id for e in mailer.sent)
    assert set(test_mail) == {i for i in eligible if cohort[i] == "test"}

    local.meter.reset()
    service.pick_winner(campaign.id, "B")
    pipeline.drain(skip=[s for s in pipeline.deliverers if s != DISPATCH])
    # Per page (8): the look-ahead and the checkpoint; per invocation (4): claim, plan, hand-over.
    assert reads(local) <= 2 * 8 + 3 * 4 + 3, reads(local)
    pipeline.drain()

    everyone = Counter(e.subscriber_id for e in mailer.sent)
    assert set(everyone.values()) == {1}
    assert set(everyone) - set(test_mail) == {i for i in eligible if cohort[i] == "remainder"}
    subjects = {e.subscriber_id: e.subject for e in mailer.sent}
    assert all(subjects[i] == "Subject B" for i in set(everyone) - set(test_mail))
    assert not {i for i, c in cohort.items() if c == "holdout"} & set(everyone)
    holdout = {s for e in local.ledger.of_campaign(campaign.id) for s, o in e.outcomes.items()
               if o == "holdout"}  # fmt: skip
    assert holdout == {i for i in eligible if cohort[i] == "holdout"}
    assert stash_docs(local) == []
    assert local.campaigns.get(campaign.id).status == "sent"


def test_the_snapshot_meters_its_stages_for_the_fan_out_simulation(local, mailer):
    """The mirror check and the snapshot, which come before dispatch's first page, are metered
    apart (CPU and wall seconds; the snapshot counted per member) so the fan-out simulation
    (shared/bench/simulation.py) models them; a phase that finds the snapshot taken adds none."""
    add_audience(local, 300, make=city)
    service = local.campaign_service
    campaign = service.create({"name": "Metered", "template": "newsletter", "ab": AB,
                               "segment": PARIS_ONLY})  # fmt: skip
    local.meter.reset()
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.drain()
    service.pick_winner(campaign.id, "B")
    pipeline.drain()
    tallies = local.meter.snapshot()
    assert tallies["stage.mirror_check"].operations == tallies["wall.mirror_check"].operations == 1
    assert tallies["stage.snapshot"].operations == tallies["wall.snapshot"].operations == 240
    assert 0 < tallies["stage.snapshot"].seconds <= tallies["wall.snapshot"].seconds + 0.01
    assert tallies["wall.mirror_check"].seconds > 0
    assert len(Counter(e.subscriber_id for e in mailer.sent)) > 0


@pytest.fixture
def in_pieces(local_settings, mailer, clock) -> Iterator[Container]:
    """A pipeline whose dispatch writes one snapshot chunk file (4 pages of 100) per invocation
    and then hands over: no time for more (MAILPIPE_AUDIENCE_SNAPSHOT_PIECE_S=0)."""
    yield from installed(local_settings, mailer, clock, audience_snapshot_piece_s=0.0)


def test_a_snapshot_too_large_for_one_invocation_is_taken_in_pieces(in_pieces, mailer):
    """Dispatch takes the snapshot in pieces (saving its progress, handing over, the next query
    going on after the last member written); the mirror is checked once, and every member gets
    exactly one message."""
    add_audience(in_pieces, 1000, make=city)
    service = in_pieces.campaign_service
    campaign = service.create({"name": "Pieces", "template": "newsletter",
                               "segment": PARIS_ONLY})  # fmt: skip
    in_pieces.meter.reset()
    service.send_now(campaign.id)
    Pipeline(in_pieces).drain()

    # 800 Parisians in files of 400: one per invocation, then one that finds no more.
    names = sorted(n.rsplit("/", 1)[-1] for n in snapshot_files(in_pieces, campaign.id))
    assert names == ["chunk-000001.json", "chunk-000002.json", "manifest.json", "progress.json"]
    tallies = in_pieces.meter.snapshot()
    assert tallies["stage.mirror_check"].operations == 1
    assert tallies["stage.snapshot"].operations == 800
    sent = Counter(e.subscriber_id for e in mailer.sent)
    assert set(sent) == parisians(in_pieces, 1000) and set(sent.values()) == {1}
    assert in_pieces.campaigns.get(campaign.id).status == "sent"


def test_an_erasure_between_two_pieces_blanks_the_person_in_the_chunks_so_far(in_pieces, mailer):
    add_audience(in_pieces, 600)
    service = in_pieces.campaign_service
    campaign = service.create({"name": "Erase early", "template": "newsletter"})
    service.send_now(campaign.id)
    pipeline = Pipeline(in_pieces, [DISPATCH])
    pipeline.step(DISPATCH, limit=1)  # the first piece: one chunk file, then the hand-over
    first = json.loads(in_pieces.import_blobs.read(f"{PREFIX}/{campaign.id}/chunk-000001.json"))
    erased = first[7]["email"]

    assert in_pieces.gdpr.erase(erased)["snapshot_chunks_erased"] == 1
    Pipeline(in_pieces).drain()
    sent = Counter(e.recipient for e in mailer.sent)
    assert len(sent) == 599 and erased not in sent and set(sent.values()) == {1}


def test_a_lost_publish_confirmation_replays_the_chunk_under_the_same_batch_ids(
    local, mailer, clock
):
    add_audience(local, 600)
    service = local.campaign_service
    campaign = service.create({"name": "Replay", "template": "newsletter"})
    flaky = lose_a_confirmation(local, f"{campaign.id}:all:000002")
    local.campaign_service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.drain()
    assert flaky.tripped and local.campaigns.get(campaign.id).status == "sending"
    clock.now += 1000  # past the lease and the stall limit: the sweep restarts the phase
    pipeline.sweep()
    pipeline.drain()

    batches = {b: n for b, n in flaky.batch_ids.items() if ":all:" in b}
    assert batches[f"{campaign.id}:all:000002"] == 2  # the replay: same id
    assert sorted(batches) == [f"{campaign.id}:all:{p:06d}" for p in range(1, 7)]
    everyone = Counter(e.subscriber_id for e in mailer.sent)
    assert set(everyone.values()) == {1} and len(everyone) == 600
    assert local.campaigns.get(campaign.id).status == "sent"


def test_changes_between_snapshot_and_send_are_honoured_once(local, mailer, clock):
    """Unsubscribed, suppressed, removed from the segment's list, erased: each lands after the
    snapshot and before the batch is sent; none is mailed and each has one outcome."""
    people = add_audience(local, 250, make=lambda i: {"lists": ["weekly"]})
    service = local.campaign_service
    campaign = service.create({"name": "Late", "template": "newsletter",
                               "segment": {"list": "weekly"}})  # fmt: skip
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.drain(skip=[s for s in pipeline.deliverers if s != DISPATCH])  # snapshot, batches
    assert len(snapshot_files(local, campaign.id)) == 2  # one file of three pages, the manifest

    clock.now += 60
    unsubscribed, suppressed, removed, erased = (p.id for p in people[10:14])
    local.unsubscribe.unsubscribe_subscriber(unsubscribed, "test")
    local.subscriber_admin.suppress(suppressed, "asked by phone")
    local.subscriber_admin.edit(removed, [], [], {})
    local.gdpr.erase(people[13].email)
    mirror_now(local)
    pipeline.drain()

    mailed = Counter(e.subscriber_id for e in mailer.sent)
    gone = {unsubscribed, suppressed, removed, erased}
    assert set(mailed) == {p.id for p in people} - gone
    assert set(mailed.values()) == {1}
    outcomes = Counter(
        (s, o) for e in local.ledger.of_campaign(campaign.id) for s, o in e.outcomes.items()
    )
    for person in gone - {erased}:  # the erased person's ledger entries are pseudonymized
        assert outcomes[(person, "suppressed")] == 1
    assert sum(outcomes.values()) == 250
    assert local.campaign_service.delivery(campaign.id).outcomes == {"sent": 246, "suppressed": 4}


def test_an_erasure_blanks_the_person_in_the_snapshot_of_a_campaign_under_way(local, mailer):
    add_audience(local, 300)
    service = local.campaign_service
    campaign = service.create({"name": "Erase", "template": "newsletter", "ab": AB})
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.drain()
    pipeline.sweep()
    cohort = cohorts(local, campaign.id, 300)
    erased = sorted(i for i, c in cohort.items() if c == "remainder")[0]
    address = local.subscribers.get(erased).email

    assert local.gdpr.erase(address)["snapshot_chunks_erased"] == 1
    chunks = [n for n in snapshot_files(local, campaign.id) if "chunk-" in n]
    assert not any(address in local.import_blobs.read(n).decode() for n in chunks)
    service.pick_winner(campaign.id, "B")
    pipeline.drain()
    everyone = Counter(e.subscriber_id for e in mailer.sent)
    assert set(everyone.values()) == {1}
    assert set(everyone) == {i for i, c in cohort.items() if c != "holdout"} - {erased}


def test_an_unbuilt_mirror_stops_the_campaign_instead_of_sending_it_to_no_one(local, mailer, clock):
    """A deployment from before the mirror, upgraded without `mirror-rebuild`: the campaign
    waits for the mirror, then stops with the repair to make."""
    from shared.domain.errors import ConfigurationError
    from shared.domain.subscriber import CONFIRMED, Subscriber

    local.subscribers.save(Subscriber("s1", "ann@example.com", CONFIRMED, confirmed_at=1.0))
    local.bus.pull("warehouse-on-analytics-events", 100)  # the mirror row is never delivered
    service = local.campaign_service
    campaign = service.create({"name": "Early", "template": "newsletter"})
    service.send_now(campaign.id)
    (message,) = local.bus.pull(DISPATCH, 10)
    assert local.dispatch.handle(json.loads(message.data)) == 0
    assert local.campaigns.get(campaign.id).mirror_missing() == 1
    clock.now += local.settings.audience_mirror_wait_s
    assert local.campaign_service.sweep() == 1  # the held phase is restarted
    (message,) = local.bus.pull(DISPATCH, 10)
    try:
        local.dispatch.handle(json.loads(message.data))
    except ConfigurationError as exc:
        assert "mirror-rebuild" in str(exc) and "lacks 1 of the 1" in str(exc)
    else:
        raise AssertionError("the campaign was dispatched from an empty mirror")
    assert snapshot_files(local, campaign.id) == [] and mailer.sent == []
    assert local.campaigns.get(campaign.id).status == "sending"


def test_a_campaign_started_while_an_import_is_still_mirroring_waits_for_the_rows(
    local, mailer, clock
):
    """The mirror rows of 300 just-imported subscribers are still on their way when the
    campaign starts: it waits (saying how many are missing) instead of leaving them out."""
    from shared.domain.subscriber import CONFIRMED, Subscriber

    add_audience(local, 200)
    emails = [f"reader{i}@example.com" for i in range(200, 500)]
    local.subscribers.create_many([Subscriber(local.subscribers.id_for(e), e, CONFIRMED,
                                              confirmed_at=1.0) for e in emails])  # fmt: skip
    # ... and their mirror rows wait on the analytics topic.
    service = local.campaign_service
    campaign = service.create({"name": "Right after", "template": "newsletter"})
    service.send_now(campaign.id)
    pipeline = Pipeline(local, [DISPATCH])
    pipeline.drain()
    waiting = local.campaigns.get(campaign.id)
    assert waiting.mirror_missing() == 300 and waiting.held_until() is None
    assert snapshot_files(local, campaign.id) == []
    shown = CliRunner().invoke(campaign_cli, ["show", campaign.id])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())  # rich wraps at the terminal's width
    assert "waiting for the subscriber mirror: 300 confirmed subscribers" in text
    app = create_dashboard_app(lambda: local.dashboards, None, service.sending)
    page = app.test_client().get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert 'data-figure="mirror-missing">300<' in page

    mirror_now(local)
    clock.now += 20
    assert service.sweep() == 1
    Pipeline(local).drain()
    sent = Counter(e.subscriber_id for e in mailer.sent)
    assert len(sent) == 500 and set(sent.values()) == {1}
    assert local.campaigns.get(campaign.id).status == "sent"


def test_send_instances_share_one_warehouse_recheck_per_ttl(local, mailer, clock):
    """Two send instances (two re-checkers on the same stores): the first asks the warehouse,
    the second reads its answer from the shared document (one Firestore read, no query) until
    the TTL is over; a leaver the query found is dropped by both."""
    people = add_audience(local, 50)
    service = local.campaign_service
    campaign = service.create({"name": "Shared", "template": "newsletter"})
    service.send_now(campaign.id)
    pipeline = Pipeline(local)
    pipeline.drain(skip=[s for s in pipeline.deliverers if s != DISPATCH])
    audience_at = local.campaigns.get(campaign.id).audience_at
    clock.now += 60
    leaver = people[7].id
    local.unsubscribe.unsubscribe_subscriber(leaver, "test")
    mirror_now(local)

    def instance() -> AudienceRecheck:
        return AudienceRecheck(local.pipeline_warehouse, local.sql_dialect, local.campaigns.get,
                               clock, 30.0, AudienceRechecks(local.documents))  # fmt: skip

    def queries() -> int:
        tally = local.meter.snapshot().get("bigquery.query")
        return tally.operations if tally else 0

    first, second = instance(), instance()
    ids = [p.id for p in people]
    before = queries()
    assert first.left(campaign.id, audience_at, ids) == {leaver}
    assert second.left(campaign.id, audience_at, ids) == {leaver}
    assert queries() - before == 1  # the second instance asked no warehouse
    clock.now += 31  # both copies expired: one instance asks again, the other reads its answer
    assert second.left(campaign.id, audience_at, ids) == {leaver}
    assert first.left(campaign.id, audience_at, ids) == {leaver}
    assert queries() - before == 2

    assert local.gdpr.export(people[7].email)["audience_rechecks"] == [campaign.id]
    local.gdpr.erase(people[7].email)  # an erasure takes the id out of the shared answer
    assert leaver not in json.dumps(local.documents.get(rechecks.COLLECTION, campaign.id))
