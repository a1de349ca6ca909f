"""Segments: validation names the bad part; evaluation is pure and follows the documented rules."""

from __future__ import annotations

import time

import pytest
from campaign_support import Pipeline, add_audience
from hypothesis import given
from hypothesis import strategies as st
from support import RecordingMailer

from shared.domain.errors import InvalidInput
from shared.domain.events import utc_iso
from shared.domain.segment import EngagementWindow, Segment, parse_moment
from shared.domain.subscriber import CONFIRMED, Subscriber

JAN_1_2025 = 1735689600.0


def person(**fields) -> Subscriber:
    defaults = {"id": "s1", "email": "ann@example.com", "status": CONFIRMED}
    return Subscriber(**{**defaults, **fields})


def matches(spec, subscriber: Subscriber, engaged=None) -> bool:
    return Segment.parse(spec).matches(subscriber, engaged)


# -- attributes and fields ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("==", "pro", True),
        ("!=", "pro", False),
        ("in", ["free", "pro"], True),
        ("not_in", ["free"], True),
        ("contains", "pr", True),
        ("contains", "PR", True),
        ("exists", True, True),
        ("exists", False, False),
    ],
)
def test_attribute_operators_on_text(op, value, expected):
    ann = person(attributes={"plan": {"tier": "pro"}})
    spec = {"attribute": "plan.tier", "op": op, "value": value}
    assert matches(spec, ann) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [("<", 40, True), ("<=", 34, True), (">", 34, False), (">=", 34, True), ("==", 34.0, True)],
)
def test_attribute_comparisons_on_numbers(op, value, expected):
    spec = {"attribute": "age", "op": op, "value": value}
    assert matches(spec, person(attributes={"age": 34})) is expected


def test_comparing_a_number_with_text_is_no_match_not_an_error():
    assert not matches(
        {"attribute": "age", "op": "<", "value": 40}, person(attributes={"age": "x"})
    )


def test_booleans_are_not_numbers():
    vip = person(attributes={"vip": True})
    assert not matches({"attribute": "vip", "op": "==", "value": 1}, vip)
    assert matches({"attribute": "vip", "op": "==", "value": True}, vip)


def test_a_missing_attribute_matches_only_not_equal_and_not_in():
    nobody = person(attributes={})
    assert not matches({"attribute": "city", "op": "==", "value": "Paris"}, nobody)
    assert not matches({"attribute": "age", "op": "<", "value": 99}, nobody)
    assert matches({"attribute": "city", "op": "!=", "value": "Paris"}, nobody)
    assert matches({"attribute": "city", "op": "not_in", "value": ["Paris"]}, nobody)
    assert matches({"attribute": "city", "op": "exists", "value": False}, nobody)


def test_contains_on_a_list_is_membership():
    tagged = person(attributes={"interests": ["cycling", "jazz"]})
    assert matches({"attribute": "interests", "op": "contains", "value": "jazz"}, tagged)
    assert not matches({"attribute": "interests", "op": "contains", "value": "ja"}, tagged)


def test_fields_read_the_subscriber_itself():
    assert matches({"field": "email", "op": "contains", "value": "@EXAMPLE.com"}, person())
    assert not matches(
        {"field": "first_name", "op": "==", "value": "Bob"}, person(first_name="Ann")
    )


# -- membership, dates, engagement -------------------------------------------------------------


def test_lists_tags_and_topics():
    ann = person(lists=["weekly"], tags=["vip"], topics=["product"])
    assert matches({"list": "weekly"}, ann)
    assert matches({"tag": "vip"}, ann)
    assert matches({"topic": "product"}, ann)
    assert not matches({"list": "monthly"}, ann)


def test_signup_and_confirmation_dates():
    ann = person(created_at=JAN_1_2025, confirmed_at=JAN_1_2025 + 86400 * 10)
    assert matches({"signed_up": {"after": "2024-12-31", "before": "2025-01-02"}}, ann)
    assert not matches({"signed_up": {"after": "2025-01-01T00:00:01Z"}}, ann)
    assert matches({"confirmed": {"after": "2025-01-05"}}, ann)
    assert not matches({"confirmed": {"before": JAN_1_2025}}, ann)
    assert not matches({"confirmed": {"after": "2020-01-01"}}, person(confirmed_at=None))


def test_engagement_uses_the_sets_the_dispatcher_looked_up():
    segment = Segment.parse({"any": [{"clicked_within_days": 30}, {"opened_within_days": 7}]})
    assert segment.engagement_windows() == {
        EngagementWindow("click", 30),
        EngagementWindow("open", 7),
    }
    engaged = {EngagementWindow("click", 30): {"s1"}, EngagementWindow("open", 7): set()}
    assert segment.matches(person(id="s1"), engaged)
    assert not segment.matches(person(id="s2"), engaged)
    assert not segment.matches(person(id="s1"), {})  # nothing looked up: nobody engaged


# -- combinators -------------------------------------------------------------------------------


def test_all_any_not():
    spec = {
        "all": [
            {"list": "weekly"},
            {"any": [{"attribute": "city", "value": "Paris"}, {"tag": "vip"}]},
            {"not": {"attribute": "plan", "value": "free"}},
        ]
    }
    assert matches(spec, person(lists=["weekly"], tags=["vip"], attributes={"plan": "pro"}))
    assert not matches(spec, person(lists=["weekly"], attributes={"city": "Oslo"}))
    assert not matches(spec, person(lists=["weekly"], tags=["vip"], attributes={"plan": "free"}))


@pytest.mark.parametrize("empty", [None, {}])
def test_an_empty_segment_is_everyone(empty):
    assert matches(empty, person())


@given(
    city=st.sampled_from(["Paris", "Oslo", None]),
    tags=st.lists(st.sampled_from(["vip", "beta"]), max_size=2),
)
def test_not_is_the_complement(city, tags):
    ann = person(attributes={"city": city} if city else {}, tags=tags)
    inner = {"any": [{"attribute": "city", "value": "Paris"}, {"tag": "vip"}]}
    assert matches({"not": inner}, ann) is not matches(inner, ann)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("vip", "segment must be a non-empty JSON object"),
        ({"colour": "red"}, "segment has no known condition"),
        ({"list": "a", "tag": "b"}, "segment has several conditions (list, tag)"),
        ({"all": []}, "segment.all must be a non-empty list"),
        ({"all": [{"list": "a"}, {"attribute": "x", "op": "=~", "value": 1}]},
         "segment.all[1].op unknown operator '=~'"),
        ({"any": [{"not": {"field": "password", "value": 1}}]},
         "segment.any[0].not.field unknown field 'password'"),
        ({"attribute": "city"}, "segment needs a value to compare with (==)"),
        ({"attribute": "city", "op": "in", "value": "Paris"}, "segment.value must be a list"),
        ({"attribute": "a..b", "value": 1}, "segment.attribute must be a dotted path"),
        ({"clicked_within_days": 0}, "segment.clicked_within_days must be a whole number"),
        ({"signed_up": {"after": "last tuesday"}}, "segment.signed_up.after must be an ISO 8601"),
        ({"signed_up": {"after": "2025-02-01", "before": "2025-01-01"}}, "after must be earlier"),
        ({"list": "a", "extra": 1}, "segment has unexpected key(s) extra"),
    ],
)  # fmt: skip
def test_bad_specs_name_the_offending_part(spec, message):
    with pytest.raises(InvalidInput) as caught:
        Segment.parse(spec)
    assert message in str(caught.value)
    assert caught.value.field == "segment"


def test_combinators_refuse_stray_keys():
    with pytest.raises(InvalidInput, match="unexpected key"):
        Segment.parse({"all": [{"list": "a"}], "note": "x"})


def test_size_and_depth_are_bounded():
    deep: dict = {"list": "a"}
    for _ in range(12):
        deep = {"not": deep}
    with pytest.raises(InvalidInput, match="nests deeper"):
        Segment.parse(deep)
    with pytest.raises(InvalidInput, match="more than 100 conditions"):
        Segment.parse({"any": [{"list": f"l{i}"} for i in range(120)]})


def test_moments_accept_dates_datetimes_and_epochs():
    assert parse_moment("2025-01-01", "x") == JAN_1_2025
    assert parse_moment("2025-01-01T01:00:00+01:00", "x") == JAN_1_2025
    assert parse_moment(JAN_1_2025, "x") == JAN_1_2025


# -- engagement looked up in the real (DuckDB) warehouse, then used by dispatch ----------------

DAY = 86400.0


def engagement_event(kind: str, subscriber_id: str, at: float, machine: bool = False) -> dict:
    return {"event_id": f"{kind}-{subscriber_id}-{at}-{machine}", "event_type": kind,
            "occurred_at": utc_iso(at), "subscriber_id": subscriber_id, "campaign_id": "old",
            "is_machine": machine, "properties": {}}  # fmt: skip


def test_one_warehouse_query_answers_every_engagement_window(container):
    now = 1_800_000_000.0
    container.warehouse.append([
        engagement_event("click", "recent-clicker", now - 2 * DAY),
        engagement_event("click", "old-clicker", now - 40 * DAY),
        engagement_event("open", "opener", now - 1 * DAY),
        engagement_event("open", "machine-opener", now - 1 * DAY, machine=True),
        engagement_event("click", "future-clicker", now + DAY),
    ])  # fmt: skip
    windows = [EngagementWindow("click", 30), EngagementWindow("click", 60),
               EngagementWindow("open", 7)]  # fmt: skip
    engaged = container.engagement.engaged(windows, now)
    assert engaged[EngagementWindow("click", 30)] == {"recent-clicker"}
    assert engaged[EngagementWindow("click", 60)] == {"recent-clicker", "old-clicker"}
    assert engaged[EngagementWindow("open", 7)] == {"opener"}  # machine opens do not count
    assert container.engagement.engaged([], now) == {}


def test_dispatch_sends_an_engagement_segment_to_the_engaged_only(container):
    mailer = RecordingMailer()
    container.__dict__["mailer"] = mailer  # pre-fill the cached property, as overrides do
    people = add_audience(container, 30)
    clickers = {p.id for p in people[:5]}
    now = time.time()
    container.warehouse.append([engagement_event("click", s, now - DAY) for s in clickers])
    service = container.campaign_service
    campaign = service.create({"name": "Engaged", "template": "newsletter",
                               "segment": {"clicked_within_days": 30}})  # fmt: skip
    service.send_now(campaign.id)
    Pipeline(container).drain()
    assert {e.subscriber_id for e in mailer.sent} == clickers
    # The snapshot's SQL left the other 25 out: dispatch never saw them.
    progress = service.get(campaign.id).progress["all"]
    assert (progress.recipients, progress.excluded) == (5, 0)
