"""The campaign benchmarks' setup delivers the whole subscriber mirror before a campaign,
whatever the bus's capacity model: a backlog beyond the warehouse function's capacity is
refused as a burst of pushes would be, and a campaign whose snapshot missed part of the list
would send to fewer people than it measures (and wait for the rest until its timeout)."""

from __future__ import annotations

import time

from shared import topology
from shared.bench import campaign_bench
from shared.domain.segment import Segment
from shared.services.audience_sql import count_query


def mirrored(container) -> int:
    query = count_query(Segment.parse({}), time.time())
    (row,) = container.warehouse.query(query.for_dialect("duckdb"), query.params)
    return int(row["n"])


def test_seeding_fills_the_mirror_past_the_warehouse_capacity(make_container) -> None:
    container = make_container(bus_capacity_scale=0.01)  # the warehouse function takes 1 at once
    subscription = topology.subscription("warehouse-on-analytics-events").name
    assert container.bus.capacity(subscription) == 1
    campaign_bench.seed(container, 1_500)  # three commits of 500: three mirror messages
    assert mirrored(container) == 1_500
    assert sum(container.bus.counts().values()) == 0  # nothing dead-lettered
