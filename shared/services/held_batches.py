"""Which campaign a dead letter of the campaign stages belongs to, so a campaign's status can
say that part of it sits in a dead-letter hold.

Dead letters are few (a poison batch, an outage's leftovers) and read only when a person asks
(`campaign show`, `mailpipe status`, the dashboard), so each is decoded just far enough to
find its campaign: a dispatch message's and a render request's JSON, a send batch's header
line (not its messages).
"""

from __future__ import annotations

import json
from collections import Counter

from shared import topology
from shared.domain.errors import InvalidInput
from shared.domain.messages import send_batch_header
from shared.ports import DeadLetter, DeadLetters

_STAGES = (topology.CAMPAIGN_DISPATCH, topology.RENDER_REQUESTS, topology.SEND_REQUESTS)
MAX_READ = 1_000  # dead letters read per subscription


class HeldBatches:
    def __init__(self, dead_letters: DeadLetters) -> None:
        self._letters = dead_letters

    def per_campaign(self) -> Counter[str]:
        """Campaign id -> its messages (batches) waiting in the campaign stages' holds."""
        held: Counter[str] = Counter()
        counts = self._letters.counts()
        for topic in _STAGES:
            for subscription in topology.subscriptions_of(topic):
                if counts.get(subscription.name):
                    for letter in self._letters.list(subscription.name, MAX_READ):
                        held[_campaign_of(topic, letter) or ""] += 1
        held.pop("", None)
        return held

    def of_campaign(self, campaign_id: str) -> int:
        return self.per_campaign()[campaign_id]


def _campaign_of(topic: str, letter: DeadLetter) -> str | None:
    try:
        if topic == topology.SEND_REQUESTS:
            found = send_batch_header(letter.data).get("campaign_id")
        else:
            found = json.loads(letter.data).get("campaign_id")
    except (InvalidInput, ValueError, AttributeError):
        return None  # not readable: `mailpipe dlq show` shows it whole
    return found if isinstance(found, str) else None
