"""Imports of any size on the real local blob store, document store and bus: the file is
scanned whole before anything is written, each chunk is one bus message through the import
function, a redelivered chunk changes nothing, a crash resumes from the last finished chunk."""

from __future__ import annotations

import json
import time

import pytest

from shared import topology
from shared.domain.errors import Conflict, InvalidInput, NotFound
from shared.domain.subscriber import CONFIRMED, PENDING, UNSUBSCRIBED
from shared.repositories import suppressions as reasons

IMPORTS = topology.subscriptions_of(topology.SUBSCRIBER_IMPORTS)[0].name


def pump(container, deliver, limit: int = 1000) -> list[dict]:
    """Deliver the import steps on the bus to the import function until none is left."""
    handled = []
    for _ in range(limit):
        batch = container.bus.pull(IMPORTS, 10)
        if not batch:
            return handled
        for delivery in batch:
            response = deliver("imports", delivery.data)
            assert response.status_code < 300, response.data
            container.bus.ack(IMPORTS, delivery.message_id)
            handled.append(json.loads(delivery.data))
    raise AssertionError("the import never finished")


def rows(n: int, start: int = 0) -> str:
    return "".join(f"user{i}@example.com,User {i},weekly\n" for i in range(start, start + n))


def test_a_file_goes_through_in_chunks_with_counts_rejects_and_duplicates(make_container, deliver):
    c = make_container(import_chunk_rows=40)
    text = "Email;First Name;Lists\n" + rows(100).replace(",", ";")
    text += "not-an-address;X;weekly\nuser7@example.com;Again;monthly\n"
    job = c.imports.upload(text.encode(), "people.csv")
    c.imports.start(job.id, confirmed_consent=True)
    steps = pump(c, deliver)

    assert [s["step"] for s in steps] == ["scan", "chunk", "chunk", "chunk"]
    done = c.imports.status(job.id)
    assert done.status == "done" and done.rows_total == 102
    assert done.counts["rows"] == 102 and done.counts["created"] == 100
    assert done.counts["rejected"] == 1 and done.counts["duplicates"] == 1
    assert done.duplicate_lines == [[103, 9]]  # user7 again, first on line 9
    user7 = c.subscribers.get(c.subscribers.id_for("user7@example.com"))
    assert user7.status == CONFIRMED and user7.lists == ["weekly", "monthly"]
    rejects = c.imports.rejects(job.id).decode().splitlines()
    assert rejects[0] == "line,email,reason"
    assert rejects[1].startswith("102,not-an-address,") and "@-sign" in rejects[1]


def test_a_redelivered_chunk_changes_nothing(make_container, deliver):
    c = make_container(import_chunk_rows=10)
    job = c.imports.upload(("email,first_name,lists\n" + rows(25)).encode(), "a.csv")
    c.imports.start(job.id)
    scan = c.bus.pull(IMPORTS, 1)[0]
    deliver("imports", scan.data)
    c.bus.ack(IMPORTS, scan.message_id)
    first_chunk = c.bus.pull(IMPORTS, 1)[0]
    deliver("imports", first_chunk.data)
    c.bus.ack(IMPORTS, first_chunk.message_id)
    after_one = c.imports.status(job.id)
    snapshot = c.documents.query("subscribers", limit=100)

    deliver("imports", first_chunk.data)  # Pub/Sub delivers it again
    assert c.imports.status(job.id).counts == after_one.counts
    assert c.documents.query("subscribers", limit=100) == snapshot
    pump(c, deliver)
    final = c.imports.status(job.id)
    assert final.status == "done" and final.counts["created"] == 25
    assert final.counts["rows"] == 25 and final.counts["confirmations_requested"] == 25


def test_a_crash_after_a_chunk_resumes_from_the_next_one(make_container, deliver):
    c = make_container(import_chunk_rows=10)
    job = c.imports.upload(("email\n" + "".join(f"u{i}@example.com\n" for i in range(30))).encode(),
                           "b.csv")  # fmt: skip
    c.imports.start(job.id, confirmed_consent=True)
    for _ in range(2):  # the scan and chunk 0
        d = c.bus.pull(IMPORTS, 1)[0]
        deliver("imports", d.data)
        c.bus.ack(IMPORTS, d.message_id)
    # The process dies after finishing chunk 0 and before the next step was acknowledged:
    # the bus loses nothing, but say the message for chunk 1 was lost with it.
    lost = c.bus.pull(IMPORTS, 1)[0]
    c.bus.ack(IMPORTS, lost.message_id)
    assert c.imports.status(job.id).done_chunks == 1
    # Any step of the import delivered again (here chunk 0's) picks up where it stopped.
    deliver("imports", json.dumps({"import_id": job.id, "step": "chunk", "chunk": 0}).encode())
    pump(c, deliver)
    final = c.imports.status(job.id)
    assert final.status == "done" and final.counts["created"] == 30 and final.done_chunks == 3


def test_a_malformed_file_is_refused_before_anything_is_written(make_container, deliver):
    c = make_container(import_chunk_rows=10)
    good = "".join(f"u{i}@example.com,x\n" for i in range(30))
    job = c.imports.upload(("email,first_name\n" + good + 'bad@example.com,"open\n').encode(),
                           "broken.csv")  # fmt: skip
    c.imports.start(job.id)
    pump(c, deliver)
    refused = c.imports.status(job.id)
    assert refused.status == "refused" and "not valid CSV at line 33" in refused.error
    assert c.documents.query("subscribers", limit=10) == []

    latin1 = c.imports.upload("email,first_name\nzoe@example.com,Zoë\n".encode("latin-1"), "l.csv")
    c.imports.start(latin1.id)
    pump(c, deliver)
    assert "not UTF-8 text: line 2" in c.imports.status(latin1.id).error
    assert c.documents.query("subscribers", limit=10) == []


def test_inspect_sniffs_maps_and_previews_and_start_checks_the_mapping(make_container):
    c = make_container()
    text = ("E-Mail\tVorname\tPlan\tTags\n"
            "ann@example.com\tAnn\tpro\t\"vip,beta\"\n"
            "nope\tBob\tfree\t\n")  # fmt: skip
    job = c.imports.upload(text.encode(), "tabs.tsv")
    found = c.imports.inspect(job.id)
    assert found.delimiter == "\t"
    assert found.mapping == {"E-Mail": "email", "Vorname": "first_name",
                             "Plan": "attributes.plan", "Tags": "tags"}  # fmt: skip
    assert found.preview[0]["email"] == "ann@example.com"
    assert found.preview[0]["memberships"] == {"tags": ["vip", "beta"]}
    assert found.rejects[0]["line"] == 3 and "@-sign" in found.rejects[0]["reason"]

    changed = c.imports.inspect(job.id, {"Plan": "ignore"})
    assert changed.preview[0]["attributes"] == {}
    bad = c.imports.inspect(job.id, {"Plan": "email"})
    assert "more than one column is mapped to email" in bad.error
    with pytest.raises(InvalidInput, match="more than one column"):
        c.imports.start(job.id, {"Plan": "email"})
    c.imports.start(job.id)
    with pytest.raises(Conflict):
        c.imports.start(job.id)
    with pytest.raises(NotFound):
        c.imports.rejects(job.id)
    assert [j.id for j in c.imports.recent()] == [job.id]


MAILCHIMP_SUBSCRIBED = (
    '"Email Address","First Name","Last Name","Address","Phone Number","MEMBER_RATING",'
    '"OPTIN_TIME","OPTIN_IP","CONFIRM_TIME","CONFIRM_IP","LATITUDE","LONGITUDE","GMTOFF",'
    '"DSTOFF","TIMEZONE","CC","REGION","LAST_CHANGED","LEID","EUID","NOTES","TAGS"\n'
    '"ann@example.com","Ann","Lee","","","2","2024-01-01 10:00:00","","2024-01-01 10:01:00",'
    '"1.2.3.4","","","","","Europe/Paris","FR","","2024-02-01 10:00:00","1","abc","",'
    '"""VIP"",""Customer"""\n'
)
MAILCHIMP_UNSUBSCRIBED = (
    '"Email Address","First Name","MEMBER_RATING","OPTIN_TIME","UNSUB_TIME",'
    '"UNSUB_CAMPAIGN_TITLE","UNSUB_CAMPAIGN_ID","UNSUB_REASON","UNSUB_REASON_OTHER","LEID","TAGS"\n'
    '"gone@example.com","Gone","1","2023-01-01 10:00:00","2024-03-01 10:00:00","Spring","x",'
    '"No longer interested","","2",""\n'
)
MAILCHIMP_CLEANED = (
    '"Email Address","First Name","MEMBER_RATING","OPTIN_TIME","CLEAN_TIME",'
    '"CLEAN_CAMPAIGN_TITLE","CLEAN_CAMPAIGN_ID","LEID","TAGS"\n'
    '"dead@example.com","Dead","1","2023-01-01 10:00:00","2024-03-01 10:00:00","Spring","x",'
    '"3",""\n'
)
LISTMONK = (
    "uuid,email,name,attributes,status,created_at,updated_at\n"
    '0b1c,lm@example.com,Lina,"{""city"": ""Oslo"", ""plan"": {""tier"": ""pro""}}",enabled,'
    "2024-01-01 10:00:00 +0000 UTC,2024-01-01 10:00:00 +0000 UTC\n"
    "0b1d,blocked@example.com,Bo,{},blocklisted,2024-01-01 10:00:00 +0000 UTC,"
    "2024-01-01 10:00:00 +0000 UTC\n"
)


def import_text(c, deliver, text: str, name: str, consent: bool = True):
    job = c.imports.upload(text.encode(), name)
    c.imports.start(job.id, confirmed_consent=consent)
    pump(c, deliver)
    return c.imports.status(job.id)


def test_mailchimp_exports_import_unchanged_and_never_confirm_the_unsubscribed(
    make_container, deliver
):
    c = make_container()
    first = import_text(c, deliver, MAILCHIMP_SUBSCRIBED, "subscribed_members_export.csv")
    assert first.status == "done" and first.counts["created"] == 1, first.error
    ann = c.subscribers.get(c.subscribers.id_for("ann@example.com"))
    assert (ann.status, ann.first_name, ann.timezone) == (CONFIRMED, "Ann", "Europe/Paris")
    assert ann.tags == ["VIP", "Customer"]
    assert ann.attributes == {"last_name": "Lee"}  # bookkeeping columns are not imported

    gone = import_text(c, deliver, MAILCHIMP_UNSUBSCRIBED, "unsubscribed_members_export.csv")
    cleaned = import_text(c, deliver, MAILCHIMP_CLEANED, "cleaned_members_export.csv")
    assert gone.counts["unsubscribed"] == 1 and cleaned.counts["suppressed"] == 1
    assert c.suppressions.reason("gone@example.com") == reasons.UNSUBSCRIBED
    assert c.suppressions.reason("dead@example.com") == reasons.HARD_BOUNCE
    for email in ("gone@example.com", "dead@example.com"):
        assert c.subscribers.find(c.subscribers.id_for(email)) is None  # never confirmed
    # An unsubscribed export row for a known subscriber unsubscribes them.
    known = MAILCHIMP_UNSUBSCRIBED.replace("gone@example.com", "ann@example.com")
    import_text(c, deliver, known, "later_unsubscribed.csv")
    assert c.subscribers.get(c.subscribers.id_for("ann@example.com")).status == UNSUBSCRIBED


def test_a_listmonk_export_imports_with_its_json_attributes_and_status(make_container, deliver):
    c = make_container()
    done = import_text(c, deliver, LISTMONK, "subscribers.csv", consent=False)
    assert done.counts["created"] == 1 and done.counts["suppressed"] == 1, done.error
    lina = c.subscribers.get(c.subscribers.id_for("lm@example.com"))
    assert lina.status == PENDING and lina.first_name == "Lina"
    assert lina.attributes == {"city": "Oslo", "plan": {"tier": "pro"}}
    assert c.suppressions.reason("blocked@example.com") == reasons.MANUAL
    assert c.subscribers.find(c.subscribers.id_for("blocked@example.com")) is None


def test_a_subscribed_row_of_a_suppressed_address_is_rejected(make_container, deliver):
    c = make_container()
    c.suppressions.add("bounced@example.com", reasons.HARD_BOUNCE, 1.0)
    done = import_text(c, deliver, "email,status\nbounced@example.com,subscribed\n", "s.csv")
    assert done.counts["rejected"] == 1
    assert "suppressed (hard_bounce)" in c.imports.rejects(done.id).decode()


def chunk_steps(container) -> list:
    """The chunk messages waiting on the bus (pulled, so leased to the caller)."""
    return [d for d in container.bus.pull(IMPORTS, 100)]


def test_chunks_run_several_at_once_in_any_order(make_container, deliver):
    c = make_container(import_chunk_rows=10, import_parallel_chunks=2)
    job = c.imports.upload(("email,first_name,lists\n" + rows(45)).encode(), "p.csv")
    c.imports.start(job.id, confirmed_consent=True)
    scan = c.bus.pull(IMPORTS, 1)[0]
    deliver("imports", scan.data)
    c.bus.ack(IMPORTS, scan.message_id)
    window = chunk_steps(c)
    assert sorted(json.loads(d.data)["chunk"] for d in window) == [0, 1]  # two in flight
    for d in reversed(window):  # chunk 1 finishes before chunk 0
        deliver("imports", d.data)
        c.bus.ack(IMPORTS, d.message_id)
    assert sorted(c.imports.status(job.id).finished_chunks) == [0, 1]
    nxt = chunk_steps(c)
    assert sorted(json.loads(d.data)["chunk"] for d in nxt) == [2, 3]  # each claimed the next
    for d in nxt:
        c.bus.ack(IMPORTS, d.message_id)  # lost with a crash, say
    # A step of the import delivered again publishes what is in flight and not finished.
    deliver("imports", json.dumps({"import_id": job.id, "step": "chunk", "chunk": 1}).encode())
    pump(c, deliver)
    final = c.imports.status(job.id)
    assert final.status == "done" and final.done_chunks == 5
    assert final.counts["rows"] == 45 and final.counts["created"] == 45


def test_import_worker_processes_share_the_chunks(make_container):
    from shared.runner.import_worker import start_import_worker

    c = make_container(import_chunk_rows=100, import_parallel_chunks=2)
    addresses = "".join(f"w{i}@example.org\n" for i in range(2000))
    job = c.imports.upload(("email\n" + addresses).encode(), "w.csv")
    c.imports.start(job.id, confirmed_consent=True)
    worker = start_import_worker(c.bus, 0.01, c.settings, processes=2)
    try:
        deadline = time.monotonic() + 60
        while c.imports.status(job.id).status != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop(timeout=30)
    final = c.imports.status(job.id)
    assert final.status == "done" and final.counts["created"] == final.rows_total
    assert len(worker.processes) == 2 and all(p.returncode == 0 for p in worker.processes)
