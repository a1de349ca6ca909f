"""The DeadLetters contract (shared/ports.py), for SqliteBus and PubSubDeadLetters (over the
dead-letter hold pull subscriptions, through Pub/Sub's REST API or the official emulator)."""

from __future__ import annotations

from typing import Any

import pytest
from contract.harnesses import MAX_ATTEMPTS

from shared import topology
from shared.domain.errors import NotFound

SIGNUPS, SENDS = (s.name for s in topology.SUBSCRIPTIONS[:2])


def topic_of(subscription: str) -> str:
    return topology.subscription(subscription).topic


def arrange(bus: Any) -> None:
    bus.dead_letter(SIGNUPS, b"first", {"kind": "a"})
    bus.dead_letter(SIGNUPS, b"second", {"kind": "b"})
    bus.dead_letter(SENDS, b"other", {})


def test_counts_list_every_subscription(bus: Any) -> None:
    assert bus.dead_letters.counts() == {s.name: 0 for s in topology.SUBSCRIPTIONS}
    arrange(bus)
    expected = {s.name: 0 for s in topology.SUBSCRIPTIONS} | {SIGNUPS: 2, SENDS: 1}
    assert bus.dead_letters.counts() == expected
    assert bus.dead_letters.counts() == expected  # looking consumes nothing


def test_list_shows_what_failed(bus: Any) -> None:
    arrange(bus)
    letters = bus.dead_letters.list(SIGNUPS)
    assert sorted((d.data, dict(d.attributes)) for d in letters) == [
        (b"first", {"kind": "a"}),
        (b"second", {"kind": "b"}),
    ]
    for letter in letters:
        assert letter.subscription == SIGNUPS
        assert letter.attempts == MAX_ATTEMPTS
        assert letter.message_id and letter.dead_lettered_at
    assert len({d.message_id for d in letters}) == 2
    assert len(bus.dead_letters.list(SIGNUPS, limit=1)) == 1
    assert bus.dead_letters.counts()[SIGNUPS] == 2


def test_replay_delivers_to_the_function_again_once(bus: Any) -> None:
    arrange(bus)
    chosen = next(d for d in bus.dead_letters.list(SIGNUPS) if d.data == b"first")
    assert bus.dead_letters.replay(SIGNUPS, [chosen.message_id]) == 1
    assert bus.dead_letters.replay(SIGNUPS, [chosen.message_id]) == 0  # already requeued
    assert bus.received(topic_of(SIGNUPS)) == [(b"first", {"kind": "a"})]
    assert bus.dead_letters.counts()[SIGNUPS] == 1
    assert bus.dead_letters.replay(SIGNUPS) == 1  # all that is left
    assert bus.received(topic_of(SIGNUPS)) == [(b"second", {"kind": "b"})]
    assert bus.dead_letters.counts()[SIGNUPS] == 0
    assert bus.dead_letters.counts()[SENDS] == 1  # other subscriptions untouched
    assert bus.received(topic_of(SENDS)) == []


def test_purge_drops_for_good(bus: Any) -> None:
    arrange(bus)
    (one, _other) = bus.dead_letters.list(SIGNUPS)
    assert bus.dead_letters.purge(SIGNUPS, [one.message_id]) == 1
    assert bus.dead_letters.purge(SIGNUPS, [one.message_id]) == 0
    assert bus.dead_letters.purge(SENDS) == 1
    assert bus.dead_letters.counts() == {s.name: 0 for s in topology.SUBSCRIPTIONS} | {SIGNUPS: 1}
    assert bus.received(topic_of(SIGNUPS)) == []
    assert bus.received(topic_of(SENDS)) == []


def test_unknown_subscriptions_are_not_found(bus: Any) -> None:
    with pytest.raises(NotFound):
        bus.dead_letters.list("no-such-subscription")
    with pytest.raises(NotFound):
        bus.dead_letters.replay("no-such-subscription")
