"""The audience SQL (shared/services/audience_sql.py) selects exactly whom the Python evaluator
does: for generated subscribers and generated segments, the ids the SQL finds on DuckDB over the
subscriber mirror equal those `AudiencePlan.eligible` (segment.matches and eligibility) accepts,
with engagement sets from the same warehouse."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.local.duckdb_warehouse import DuckDbWarehouse
from shared.domain import events as ev
from shared.domain.segment import Segment
from shared.domain.subscriber import CONFIRMED, PENDING, UNSUBSCRIBED, Subscriber
from shared.domain.subscriber_mirror import change_row, state_of, tombstone
from shared.services.audience import AudiencePlan
from shared.services.audience_sql import count_query, members_query
from shared.services.engagement import EngagementQueries

AT = 1_780_000_000.0
DAY = 86_400.0
LISTS = ("weekly", "news", "deals")
SCALARS: list[Any] = ["pro", "Pro", "free", "a", "", "über", 0, 1, 2, -1, 1.5, 2.0, True, False]
NAMES = ("Ann", "bob", "cy")
FIELD_VALUES = ("ann", "@example.org", "weekly", "UTC", "", "Über", "b")
PATHS = ("n", "s", "flag", "xs", "plan.tier", "plan", "missing", "plan.missing.deep")


def attribute_value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(SCALARS)
    if roll < 0.7:
        return None
    if roll < 0.9:
        return [rng.choice(SCALARS) for _ in range(rng.randint(0, 3))]
    return {"tier": rng.choice(SCALARS)}


def population(seed: int, size: int) -> list[Subscriber]:
    rng = random.Random(seed)
    people = []
    for i in range(size):
        attributes: dict[str, Any] = {}
        for key in ("n", "s", "flag", "xs"):
            if rng.random() < 0.7:
                attributes[key] = attribute_value(rng)
        if rng.random() < 0.6:
            attributes["plan"] = {"tier": rng.choice(SCALARS)} if rng.random() < 0.8 else "pro"
        confirmed = rng.choice([None, 0.0, AT - 5 * DAY, AT - 100, AT + 100])
        people.append(
            Subscriber(
                id=f"s{i:04d}",
                email=f"{rng.choice(NAMES)}{i}@{rng.choice(['example.org', 'Mail.com'])}",
                status=rng.choice([CONFIRMED] * 6 + [PENDING, UNSUBSCRIBED]),
                first_name=rng.choice(["", "Ann", "Über", "bob"]),
                lists=rng.sample(LISTS, rng.randint(0, 3)),
                tags=rng.sample(["vip", "new"], rng.randint(0, 2)),
                topics=rng.sample(["product"], rng.randint(0, 1)),
                frequency=rng.choice(["all", "weekly", "monthly"]),
                timezone=rng.choice([None, "Europe/Berlin", "UTC"]),
                attributes=attributes,
                created_at=rng.choice([0.0, AT - 400 * DAY, AT - 30 * DAY, AT - DAY]),
                confirmed_at=confirmed,
                suppressed=rng.choice([None] * 8 + ["hard_bounce", ""]),
            )
        )
    return people


def engagement_events(people: list[Subscriber], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for person in people:
        for _ in range(rng.randint(0, 2)):
            kind = rng.choice([ev.OPEN, ev.CLICK])
            when = AT - rng.choice([0.5, 3, 10, 40]) * DAY
            event = ev.AnalyticsEvent(
                event_id=f"{person.id}-{kind}-{when}", event_type=kind,
                occurred_at=ev.utc_iso(when), subscriber_id=person.id,
                is_machine=rng.random() < 0.2,
            )  # fmt: skip
            rows.append(event.to_row(ev.utc_iso(when + 1)))
    return rows


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> tuple[DuckDbWarehouse, list[Subscriber]]:
    root: Path = tmp_path_factory.mktemp("warehouse")
    warehouse = DuckDbWarehouse(root, snapshot_reads=False)
    people = population(7, 300)
    # An older state of everyone first: only the latest row of each may count.
    warehouse.append_subscribers([change_row(p.id, tombstone(), AT - 500 * DAY) for p in people])
    warehouse.append_subscribers([change_row(p.id, state_of(p), AT - 10) for p in people])
    warehouse.append(engagement_events(people, 7))
    return warehouse, people


def python_selection(
    warehouse: DuckDbWarehouse, people: list[Subscriber], segment: Segment
) -> list[str]:
    engaged = EngagementQueries(warehouse).engaged(segment.engagement_windows(), AT)
    plan = AudiencePlan("c", segment, None, engaged, AT)
    return sorted(p.id for p in people if plan.eligible(p))


def sql_selection(warehouse: DuckDbWarehouse, segment: Segment) -> list[str]:
    query = members_query(segment, AT)
    return [r["subscriber_id"] for r in warehouse.query(query.for_dialect("duckdb"), query.params)]


def scalar() -> st.SearchStrategy[Any]:
    return st.sampled_from([*SCALARS, None, "ü", "PRO", 3])


def comparison() -> st.SearchStrategy[dict[str, Any]]:
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    attribute = st.builds(lambda p, o, v: {"attribute": p, "op": o, "value": v},
                          st.sampled_from(PATHS), ops, scalar())  # fmt: skip
    among = st.builds(lambda p, o, v: {"attribute": p, "op": o, "value": v},
                      st.sampled_from(PATHS), st.sampled_from(["in", "not_in"]),
                      st.lists(scalar(), max_size=3))  # fmt: skip
    contains = st.builds(lambda p, v: {"attribute": p, "op": "contains", "value": v},
                         st.sampled_from(PATHS), scalar())  # fmt: skip
    exists = st.builds(lambda p, v: {"attribute": p, "op": "exists", "value": v},
                       st.sampled_from(PATHS), st.booleans())  # fmt: skip
    field = st.builds(lambda f, o, v: {"field": f, "op": o, "value": v},
                      st.sampled_from(["email", "first_name", "frequency", "timezone"]),
                      st.sampled_from(["==", "!=", "<", ">=", "contains", "exists"]),
                      st.sampled_from(FIELD_VALUES))  # fmt: skip
    return st.one_of(attribute, among, contains, exists, field)


def leaf() -> st.SearchStrategy[dict[str, Any]]:
    membership = st.builds(lambda k, n: {k: n}, st.sampled_from(["list", "tag", "topic"]),
                           st.sampled_from([*LISTS, "vip", "new", "product"]))  # fmt: skip
    dates = st.builds(
        lambda k, after, before: {
            k: {key: v for key, v in (("after", after), ("before", before)) if v is not None}
            or {"after": AT - 1000 * DAY}
        },
        st.sampled_from(["signed_up", "confirmed"]),
        st.sampled_from([None, AT - 100 * DAY, AT - 2 * DAY]),
        st.sampled_from([None, AT - 20 * DAY, AT + DAY]),
    ).filter(lambda s: _valid(s))
    engagement = st.builds(lambda k, d: {k: d},
                           st.sampled_from(["clicked_within_days", "opened_within_days"]),
                           st.sampled_from([1, 7, 30]))  # fmt: skip
    return st.one_of(comparison(), membership, dates, engagement)


def _valid(spec: dict[str, Any]) -> bool:
    try:
        Segment.parse(spec)
    except Exception:
        return False
    return True


segments = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        st.builds(lambda parts: {"all": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"any": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda part: {"not": part}, inner),
    ),
    max_leaves=6,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=segments)
def test_the_sql_selects_whom_the_segment_matches(
    mirrored: tuple[DuckDbWarehouse, list[Subscriber]], spec: dict[str, Any]
) -> None:
    warehouse, people = mirrored
    segment = Segment.parse(spec)
    assert sql_selection(warehouse, segment) == python_selection(warehouse, people, segment), spec


def test_every_condition_kind_selects_someone_and_not_everyone(
    mirrored: tuple[DuckDbWarehouse, list[Subscriber]],
) -> None:
    """The generated population is rich enough that each kind of condition discriminates."""
    warehouse, people = mirrored
    everyone = len(python_selection(warehouse, people, Segment.parse({})))
    for spec in (
        {"attribute": "plan.tier", "op": "==", "value": "pro"},
        {"attribute": "xs", "op": "contains", "value": 1},
        {"attribute": "n", "op": "in", "value": [True, "a"]},
        {"attribute": "n", "op": ">", "value": 0},
        {"field": "email", "op": "contains", "value": "ANN"},
        {"list": "weekly"},
        {"signed_up": {"after": AT - 40 * DAY}},
        {"clicked_within_days": 7},
        {"not": {"opened_within_days": 30}},
    ):
        segment = Segment.parse(spec)
        selected = sql_selection(warehouse, segment)
        assert 0 < len(selected) < everyone, spec
        assert selected == python_selection(warehouse, people, segment), spec


def test_the_count_query_counts_the_members(
    mirrored: tuple[DuckDbWarehouse, list[Subscriber]],
) -> None:
    warehouse, people = mirrored
    segment = Segment.parse(
        {"any": [{"list": "news"}, {"attribute": "flag", "op": "==", "value": True}]}
    )
    query = count_query(segment, AT)
    (row,) = warehouse.query(query.for_dialect("duckdb"), query.params)
    assert row["n"] == len(python_selection(warehouse, people, segment)) > 0


def test_values_are_parameters_never_text_of_the_statement() -> None:
    hostile = "x' OR 1=1 --"
    query = members_query(Segment.parse({"attribute": "plan.tier", "value": hostile}), AT)
    assert hostile not in query.sql and hostile in query.params.values()
