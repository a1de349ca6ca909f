"""The A/B remainder stash on the real local document store: pages, overflow parts, replays,
GDPR erasure and purging."""

from __future__ import annotations

from shared.bootstrap import Container
from shared.domain.messages import Recipient
from shared.repositories.remainder_stash import (
    COLLECTION,
    MAX_PART_BYTES,
    MAX_PART_MEMBERS,
    RemainderStash,
    split,
)

BIG = "x" * (MAX_PART_BYTES // 3)  # three of these members do not fit one document


def member(n: int, note: str = "") -> Recipient:
    return Recipient(f"s{n:04d}", f"reader{n}@example.com", f"Reader{n}",
                     {"attributes": {"note": note}} if note else {})  # fmt: skip


def test_split_caps_bytes_and_members_and_keeps_an_empty_page() -> None:
    assert split([]) == [[]]
    big = [member(n, BIG) for n in range(5)]
    assert [len(p) for p in split(big)] == [2, 2, 1]
    many = [member(n) for n in range(MAX_PART_MEMBERS + 1)]
    assert [len(p) for p in split(many)] == [MAX_PART_MEMBERS, 1]
    assert [len(p) for p in split([member(0, BIG * 4)])] == [1]  # one huge member: its own part


def test_pages_read_back_in_order_with_overflow_parts_joined(container: Container) -> None:
    stash = RemainderStash(container.documents)
    stash.put_page("c1", 1, [member(n, BIG) for n in range(5)], 1.0)
    stash.put_page("c1", 2, [], 1.0)
    stash.put_page("c1", 3, [member(9)], 1.0)
    stash.put_page("c2", 1, [member(7)], 1.0)  # another campaign: never read for c1
    pages = stash.pages("c1")
    first = pages.page(None)
    assert [(p.id, p.page, p.parts) for p in first] == [("c1:000001", 1, 3)]
    assert [m.subscriber_id for m in first[0].members] == [f"s{n:04d}" for n in range(5)]
    assert first[0].members[0] == member(0, BIG)
    second = pages.page("c1:000001")
    assert [(p.id, p.members) for p in second] == [("c1:000002", [])]
    assert pages.page("c1:000001", until="c1:000001") == []  # nothing after it up to itself
    assert [p.id for p in pages.page("c1:000002", until="c1:000003")] == ["c1:000003"]
    assert pages.page("c1:000003") == []


def test_a_replay_with_fewer_parts_ignores_and_purges_the_stale_ones(container: Container) -> None:
    stash = RemainderStash(container.documents)
    stash.put_page("c1", 1, [member(n, BIG) for n in range(5)], 1.0)  # three parts
    stash.put_page("c1", 1, [member(n) for n in range(4)], 2.0)  # the replay: one part
    [page] = stash.pages("c1").page(None)
    assert page.parts == 1 and [m.subscriber_id for m in page.members] == [
        f"s{n:04d}" for n in range(4)
    ]
    stash.discard("c1", [page])
    leftovers = [doc_id for doc_id, _ in container.documents.query(COLLECTION)]
    assert leftovers == ["c1:000001.002", "c1:000001.003"]
    assert stash.purge("c1") == 2
    assert container.documents.query(COLLECTION) == []


def test_erasure_removes_the_person_from_every_document(container: Container) -> None:
    stash = RemainderStash(container.documents)
    stash.put_page("c1", 1, [member(n, BIG) for n in range(5)], 1.0)
    stash.put_page("c2", 4, [member(4), member(8)], 1.0)
    [entry, other] = sorted(stash.of_subscriber("s0004"), key=lambda e: e["campaign_id"])
    assert (entry["campaign_id"], entry["email"]) == ("c1", "reader4@example.com")
    assert other["document"] == "c2:000004"
    assert stash.erase_subscriber("s0004") == 2
    assert stash.of_subscriber("s0004") == [] and stash.erase_subscriber("s0004") == 0
    [page] = stash.pages("c1").page(None)
    assert [m.subscriber_id for m in page.members] == [f"s{n:04d}" for n in range(4)]
    [kept] = stash.pages("c2").page(None)
    assert [m.subscriber_id for m in kept.members] == ["s0008"]
