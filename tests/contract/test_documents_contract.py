"""The DocumentStore contract (shared/ports.py), for SqliteDocuments and FirestoreDocuments."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from shared.domain.errors import AlreadyExists, InvalidInput
from shared.metering import OperationMeter
from shared.ports import BatchWrite, Document, DocumentStore, Filter, paged

NPM = "firestore-npm"
NO_ID_ORDER = "@firestore-emulator/server 0.3.15 ignores order_by(__name__): insertion order"
NO_CURSORS = "@firestore-emulator/server 0.3.15 ignores query cursors (start_after)"
NO_DOTTED = "@firestore-emulator/server 0.3.15 cannot filter on a nested field path"
NO_REPLACE = "@firestore-emulator/server 0.3.15 merges a set() into the old document"
NO_ATOMIC_BATCH = (
    "@firestore-emulator/server 0.3.15 commits a batch's other writes when a create fails"
)
NO_ISOLATION = "@firestore-emulator/server 0.3.15 transactions do not isolate (lost updates)"

# Inserted out of id order so that an unordered store cannot pass by accident.
PEOPLE: dict[str, Document] = {
    "p3": {"group": "g1", "name": "cy", "age": 30, "tags": ["x", "z"], "team": {"city": "oslo"}},
    "p1": {"group": "g2", "name": "al", "age": 10, "tags": ["x"], "team": {"city": "rome"}},
    "p5": {"group": "g2", "name": "ed", "age": 50, "tags": [], "team": {"city": "oslo"}},
    "p2": {"group": "g1", "name": "bo", "age": 20, "tags": ["y"], "team": {"city": "lima"}},
    "p4": {"group": "g2", "name": "di", "age": 40, "tags": ["x", "y"], "team": {"city": "rome"}},
}


def fill(store: DocumentStore) -> None:
    for doc_id, doc in PEOPLE.items():
        store.create("people", doc_id, doc)


def ids(rows: list[tuple[str, Document]]) -> list[str]:
    return [doc_id for doc_id, _ in rows]


def pages(store: DocumentStore, filters: list[Filter], size: int) -> list[list[str]]:
    """`paged`, but bounded: a store that ignores the cursor fails instead of looping."""
    found = []
    for page in paged(store, "people", filters, page_size=size):
        found.append(ids(page))
        assert len(found) <= len(PEOPLE), f"paging does not advance: {found}"
    return found


def test_create_is_create_if_absent(documents: DocumentStore) -> None:
    documents.create("things", "a", {"n": 1, "nested": {"list": [1, "two", None, True]}})
    with pytest.raises(AlreadyExists):
        documents.create("things", "a", {"n": 2})
    assert documents.get("things", "a") == {"n": 1, "nested": {"list": [1, "two", None, True]}}


def test_get_put_delete(documents: DocumentStore) -> None:
    assert documents.get("things", "missing") is None
    documents.put("things", "a", {"n": 1})
    assert documents.get("things", "a") == {"n": 1}
    documents.put("things", "a", {"n": 2})
    assert documents.get("things", "a") == {"n": 2}
    documents.delete("things", "a")
    documents.delete("things", "a")  # absent is fine
    assert documents.get("things", "a") is None


@pytest.mark.known_gap(NPM, NO_REPLACE)
def test_put_and_update_replace_the_whole_document(documents: DocumentStore) -> None:
    documents.put("things", "a", {"n": 1, "gone": "soon"})
    documents.put("things", "a", {"n": 2})
    assert documents.get("things", "a") == {"n": 2}
    documents.update("things", "a", lambda doc: {"m": 3})
    assert documents.get("things", "a") == {"m": 3}


def test_get_many_returns_only_existing(documents: DocumentStore) -> None:
    for i in range(7):
        documents.put("things", f"t{i}", {"i": i})
    found = documents.get_many("things", ["t1", "t5", "nope", "t1"])
    assert found == {"t1": {"i": 1}, "t5": {"i": 5}}
    assert documents.get_many("things", []) == {}


def test_update_creates_changes_and_can_decline(documents: DocumentStore) -> None:
    def add_one(doc: Document | None) -> Document:
        return {"n": (doc or {"n": 0})["n"] + 1}

    assert documents.update("counters", "c", add_one) == {"n": 1}
    assert documents.update("counters", "c", add_one) == {"n": 2}
    assert documents.update("counters", "c", lambda doc: None) == {"n": 2}
    assert documents.update("counters", "absent", lambda doc: None) is None
    assert documents.get("counters", "absent") is None
    assert documents.get("counters", "c") == {"n": 2}


def test_update_writes_nothing_when_mutate_raises(documents: DocumentStore) -> None:
    documents.put("counters", "c", {"n": 1})

    def refuse(doc: Document | None) -> Document:
        raise InvalidInput("no")

    with pytest.raises(InvalidInput):
        documents.update("counters", "c", refuse)
    with pytest.raises(InvalidInput):
        documents.update("counters", "fresh", refuse)
    assert documents.get("counters", "c") == {"n": 1}
    assert documents.get("counters", "fresh") is None


@pytest.mark.known_gap(NPM, NO_ISOLATION)
def test_racing_updates_lose_nothing(documents: DocumentStore) -> None:
    """Two threads increment one document; both read before either writes (the barrier and
    the pause inside mutate make the race certain), and every increment must survive."""
    documents.put("counters", "race", {"n": 0})
    rounds = 3
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def increment(doc: Document | None) -> Document:
        time.sleep(0.05)
        return {"n": (doc or {"n": 0})["n"] + 1}

    def worker() -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                documents.update("counters", "race", increment)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert documents.get("counters", "race") == {"n": 2 * rounds}


@pytest.mark.known_gap(NPM, NO_ID_ORDER)
def test_query_without_filters_is_in_id_order(documents: DocumentStore) -> None:
    fill(documents)
    assert ids(documents.query("people")) == ["p1", "p2", "p3", "p4", "p5"]
    assert ids(documents.query("people", limit=2)) == ["p1", "p2"]
    assert documents.query("people", limit=1)[0] == ("p1", PEOPLE["p1"])
    assert documents.query("nobody") == []


@pytest.mark.known_gap(NPM, NO_ID_ORDER)
@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter("group", "==", "g1"), ["p2", "p3"]),
        (Filter("tags", "array_contains", "x"), ["p1", "p3", "p4"]),
        (Filter("age", "in", [30, 20, 99]), ["p2", "p3"]),
    ],
    ids=["==", "array_contains", "in"],
)
def test_equality_filters_keep_id_order(
    documents: DocumentStore, flt: Filter, expected: list[str]
) -> None:
    fill(documents)
    assert ids(documents.query("people", [flt])) == expected


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter("age", "!=", 30), {"p1", "p2", "p4", "p5"}),
        (Filter("age", "<", 30), {"p1", "p2"}),
        (Filter("age", "<=", 30), {"p1", "p2", "p3"}),
        (Filter("age", ">", 30), {"p4", "p5"}),
        (Filter("age", ">=", 30), {"p3", "p4", "p5"}),
        (Filter("name", ">", "bz"), {"p3", "p4", "p5"}),
        (Filter("tags", "array_contains", "y"), {"p2", "p4"}),
        (Filter("name", "in", ["al", "ed", "zz"]), {"p1", "p5"}),
    ],
    ids=["!=", "<", "<=", ">", ">=", "> text", "array_contains", "in"],
)
def test_every_operator_selects_the_matching_documents(
    documents: DocumentStore, flt: Filter, expected: set[str]
) -> None:
    """(Firestore orders a range/!= query by that field first; the set is what is common.)"""
    fill(documents)
    rows = documents.query("people", [flt])
    assert set(ids(rows)) == expected
    assert all(doc == PEOPLE[doc_id] for doc_id, doc in rows)


def test_filters_combine(documents: DocumentStore) -> None:
    fill(documents)
    rows = documents.query("people", [Filter("tags", "array_contains", "x"),
                                      Filter("name", "in", ["al", "di", "ed"])])  # fmt: skip
    assert set(ids(rows)) == {"p1", "p4"}


@pytest.mark.known_gap(NPM, NO_DOTTED)
def test_nested_field_paths_filter(documents: DocumentStore) -> None:
    fill(documents)
    assert set(ids(documents.query("people", [Filter("team.city", "==", "rome")]))) == {
        "p1",
        "p4",
    }


@pytest.mark.known_gap(NPM, NO_CURSORS)
def test_start_after_pages_in_id_order(documents: DocumentStore) -> None:
    fill(documents)
    assert ids(documents.query("people", start_after="p2", limit=2)) == ["p3", "p4"]
    assert ids(documents.query("people", start_after="p5")) == []
    assert pages(documents, [], 2) == [["p1", "p2"], ["p3", "p4"], ["p5"]]


@pytest.mark.known_gap(NPM, NO_CURSORS)
@pytest.mark.parametrize(
    ("flt", "expected"),
    [(Filter("age", ">=", 20), ["p2", "p3", "p4", "p5"]),
     (Filter("age", "!=", 30), ["p1", "p2", "p4", "p5"])],
    ids=[">=", "!="],
)  # fmt: skip
def test_paging_a_range_query_visits_each_match_once(
    documents: DocumentStore, flt: Filter, expected: list[str]
) -> None:
    fill(documents)
    seen = [doc_id for page in pages(documents, [flt], 2) for doc_id in page]
    assert sorted(seen) == expected


def test_operations_are_metered_alike(documents: DocumentStore, meter: OperationMeter) -> None:
    """Both adapters count the same billable operations, so cost is priced from counts."""
    documents.create("things", "a", {"n": 1})
    documents.put("things", "b", {"n": 2})
    documents.get("things", "a")
    documents.get_many("things", ["a", "b", "c"])
    documents.update("things", "a", lambda doc: {"n": 5})
    documents.query("things", [Filter("n", "==", 5)])
    documents.query("nothing-here")
    documents.delete("things", "b")
    counts: dict[str, Any] = {k: v.operations for k, v in meter.snapshot().items()}
    assert counts == {"firestore.write": 3, "firestore.read": 1 + 3 + 1 + 1 + 1,
                      "firestore.delete": 1, "firestore.write@things": 3,
                      "firestore.read@things": 1 + 3 + 1 + 1, "firestore.read@nothing-here": 1,
                      "firestore.delete@things": 1}  # fmt: skip


def test_write_batch_creates_and_replaces_in_one_commit(
    documents: DocumentStore, meter: OperationMeter
) -> None:
    documents.put("things", "old", {"n": 1})
    writes = [BatchWrite("things", f"b{i:03d}", {"i": i}, create_only=True) for i in range(499)]
    before = meter.snapshot()["firestore.write"].operations
    documents.write_batch([*writes, BatchWrite("things", "old", {"n": 2})])
    assert meter.snapshot()["firestore.write"].operations - before == 500  # one write each
    assert documents.get("things", "b498") == {"i": 498}
    assert documents.get("things", "old") == {"n": 2}


@pytest.mark.known_gap(NPM, NO_ATOMIC_BATCH)
def test_write_batch_is_all_or_nothing_when_a_create_finds_a_document(
    documents: DocumentStore,
) -> None:
    documents.put("things", "taken", {"n": 1})
    with pytest.raises(AlreadyExists):
        documents.write_batch([
            BatchWrite("things", "fresh", {"n": 2}, create_only=True),
            BatchWrite("things", "replaced", {"n": 3}),
            BatchWrite("things", "taken", {"n": 4}, create_only=True),
        ])  # fmt: skip
    assert documents.get("things", "fresh") is None
    assert documents.get("things", "replaced") is None
    assert documents.get("things", "taken") == {"n": 1}


def test_write_batch_refuses_more_than_500_or_a_document_twice(documents: DocumentStore) -> None:
    with pytest.raises(InvalidInput):
        documents.write_batch([BatchWrite("things", f"x{i}", {}) for i in range(501)])
    with pytest.raises(InvalidInput):
        documents.write_batch([BatchWrite("things", "x", {}), BatchWrite("things", "x", {})])
    assert documents.get("things", "x0") is None


def test_count_matches_what_a_query_selects(documents: DocumentStore) -> None:
    """An equality and a range on another field, as the dispatcher's mirror check counts."""
    fill(documents)
    combined = [Filter("group", "==", "g2"), Filter("age", "<=", 40)]
    assert documents.count("people", combined) == 2  # p1 (10), p4 (40); not p5 (50)
    assert documents.count("people", [Filter("group", "==", "g1")]) == 2
    assert documents.count("people") == len(PEOPLE)
    assert documents.count("nothing-here") == 0


def test_a_count_is_billed_per_thousand_matches(
    documents: DocumentStore, meter: OperationMeter
) -> None:
    """Firestore bills a count one read per 1,000 index entries, at least one."""
    for start in range(0, 1001, 500):
        documents.write_batch([BatchWrite("many", f"d{i:04d}", {"n": i})
                               for i in range(start, min(start + 500, 1001))])  # fmt: skip
    before = meter.snapshot().get("firestore.read@many")
    assert documents.count("many") == 1001
    assert documents.count("many", [Filter("n", "<", 10)]) == 10
    reads = meter.snapshot()["firestore.read@many"].operations
    assert reads - (before.operations if before else 0) == 2 + 1
