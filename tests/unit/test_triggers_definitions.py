"""The trigger definitions: the shipped file, every validation rule (all problems reported at
once, each with its place), the CLI, and the pure rules (durations, conditions, quiet hours,
caps)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import REPO

from shared.adapters.local.filesystem_blobs import FilesystemBlobs
from shared.domain.behaviour import BehaviourEvent
from shared.domain.trigger_definitions import InvalidTriggers, load_yaml
from shared.domain.triggers import (
    Condition,
    FrequencyCap,
    QuietHours,
    Trigger,
    cap_reached,
    parse_duration,
)
from shared.services.trigger_catalog import TriggerCatalog

SHIPPED = REPO / "templates" / "triggers" / "triggers.yaml"
TEMPLATES = {"welcome", "cart_abandoned"}


def problems_of(text: str) -> list[str]:
    with pytest.raises(InvalidTriggers) as caught:
        load_yaml(text, TEMPLATES, "test.yaml")
    assert "test.yaml" in str(caught.value)
    return caught.value.problems


# --- the shipped file ----------------------------------------------------------------------
def test_the_shipped_file_is_valid_against_the_shipped_templates() -> None:
    catalog = TriggerCatalog(FilesystemBlobs(REPO / "templates"), "triggers/triggers.yaml")
    declared = catalog.current()
    assert [t.id for t in declared.triggers] == [
        "cart_abandonment", "welcome_day0", "welcome_day3", "welcome_day7"]  # fmt: skip
    assert {t.template for t in declared.triggers} <= catalog.known_templates()
    cart = declared.get("cart_abandonment")
    assert cart is not None
    assert (cart.event, cart.wait_s, cart.unless) == ("cart_abandoned", 3600, ("purchase",))
    assert cart.frequency_cap == FrequencyCap(1, 86400) and cart.quiet_hours == QuietHours(
        1260, 480
    )
    assert cart.goal is not None and (cart.goal.event, cart.goal.within_s) == (
        "purchase",
        3 * 86400,
    )
    welcome = [declared.get(f"welcome_day{d}") for d in (0, 3, 7)]
    assert [(t.event, t.wait_s) for t in welcome if t] == [
        ("subscriber.confirmed", 0), ("subscriber.confirmed", 3 * 86400),
        ("subscriber.confirmed", 7 * 86400)]  # fmt: skip
    assert declared.global_cap == FrequencyCap(3, 86400)


def test_an_absent_file_declares_no_triggers(tmp_path: Path) -> None:
    assert (
        TriggerCatalog(FilesystemBlobs(tmp_path), "triggers/triggers.yaml").current().triggers == ()
    )


def test_a_new_upload_is_picked_up_after_the_check_interval(tmp_path: Path) -> None:
    blobs = FilesystemBlobs(tmp_path)
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "welcome.html").write_text("<title>Hi</title>")
    blobs.write("t.yaml", b"triggers: [{id: a, event: x, template: welcome}]")
    now = [0.0]
    catalog = TriggerCatalog(blobs, "t.yaml", check_interval_s=30, monotonic=lambda: now[0])
    assert [t.id for t in catalog.current().triggers] == ["a"]
    blobs.write(
        "t.yaml",
        b"triggers: [{id: b, event: x, template: welcome}, {id: c, event: y, template: welcome}]",
    )
    assert [t.id for t in catalog.current().triggers] == ["a"], "within the check interval"
    now[0] = 31
    assert [t.id for t in catalog.current().triggers] == ["b", "c"]
    blobs.write("t.yaml", b"triggers: [{id: b, event: x, template: missing}]")
    now[0] = 62
    with pytest.raises(InvalidTriggers, match="unknown template 'missing'"):
        catalog.current()


# --- validation ------------------------------------------------------------------------------
def test_every_problem_is_reported_with_its_place() -> None:
    found = problems_of("""
triggers:
  - id: cart
    event: cart_abandoned
    wait: 1 hour
    template: cart_abandond
    conditions:
      - {property: total, op: ">", value: true}
      - {property: items, op: exists, value: 1}
      - {property: sku, op: in, value: A1}
      - {property: "", op: "=="}
      - {property: total, op: "~", value: 1}
    unless: [purchase, "Not A Name"]
    frequency_cap: {max: 0, per: forever}
    quiet_hours: 21:00
    goal: {event: purchase, within: soon}
    wiat: 2h
  - id: cart
    on: cart_abandoned
""")
    expected = [
        "triggers[0] (cart).wiat: unknown key",
        "triggers[0] (cart).template: unknown template 'cart_abandond'",
        "triggers[0] (cart).conditions[0].value: `>` needs a number or a string",
        "triggers[0] (cart).conditions[1].value: `exists` takes no value",
        "triggers[0] (cart).conditions[2].value: `in` needs a list of values",
        "triggers[0] (cart).conditions[3].property: required",
        "triggers[0] (cart).conditions[4].op: must be one of",
        "triggers[0] (cart).wait: '1 hour' is not a duration such as 30m, 1h or 3d",
        "triggers[0] (cart).unless: an event name or a list of event names",
        "triggers[0] (cart).frequency_cap.max: a whole number of mails, at least 1",
        "triggers[0] (cart).frequency_cap.per: 'forever' is not a duration",
        'triggers[0] (cart).quiet_hours: 1260 is not a window such as "21:00-08:00"',
        "triggers[0] (cart).goal.within: 'soon' is not a duration",
        "triggers[1] (cart).id: 'cart' is declared twice",
        "triggers[1] (cart).on: write `event:`",
        "triggers[1] (cart).event: required",
        "triggers[1] (cart).template: required",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in found), f"{text!r} not in {found}"
    assert len(found) == len(expected) + 1  # conditions[3] also has no value for ==


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("triggers: {id: a}", "triggers: must be a list"),
        ("- just a list", "the file must be a mapping"),
        ("version: 2\ntriggers: []", "version: only version 1 exists"),
        ("triggers: [{id: a, event: x, template: welcome, unless: x}]", "the trigger's own event"),
        ("triggers: [{id: a, event: x, template: welcome, wait: 91d}]", "wait: at most 90d"),
        ("triggers: [{id: a, event: x, template: welcome, quiet_hours: '08:00-08:00'}]", "08"),
        ("triggers: [{id: A b, event: x, template: welcome}]", "id: required, a lowercase slug"),
        ("global_frequency_cap: {max: 1}\ntriggers: []", "global_frequency_cap: must be"),
        ("triggers: [oops", "not valid YAML"),
    ],
)  # fmt: skip
def test_each_rule(text: str, says: str) -> None:
    assert any(says in p for p in problems_of(text)), problems_of(text)


def test_an_empty_file_declares_nothing_and_defaults_apply() -> None:
    assert load_yaml("", TEMPLATES, "x").triggers == ()
    [t] = load_yaml("triggers: [{id: a, event: x, template: welcome}]", None, "x").triggers
    assert (t.wait_s, t.unless, t.frequency_cap, t.quiet_hours, t.goal) == (0, (), None, None, None)


def test_the_cli_validates_and_exits_non_zero_on_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("triggers: [{id: a, event: x, template: nope, wait: 1 hour}]")
    env = {
        "MAILPIPE_DATA_DIR": str(tmp_path / "var"),
        "MAILPIPE_TEMPLATE_ROOT": str(REPO / "templates"),
        "PATH": "/usr/bin:/bin",
    }
    command = [sys.executable, "-m", "shared.cli.main", "triggers", "validate"]
    ok = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "4 trigger(s), no problems" in ok.stdout, ok.stderr
    failed = subprocess.run([*command, str(bad)], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert failed.returncode == 1
    assert (
        "unknown template 'nope'" in failed.stderr and "'1 hour' is not a duration" in failed.stderr
    )
    missing = subprocess.run([*command, str(tmp_path / "none.yaml")], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 1 and "cannot read" in missing.stderr


# --- pure rules ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h", 3600), ("3d", 259200), ("1d12h", 129600), ("0d", 0), ("45s", 45),
     ("1 h", None), ("h", None), ("-1h", None), ("1w", None), ("", None), (3, None)],
)  # fmt: skip
def test_durations(text: object, seconds: float | None) -> None:
    assert parse_duration(text) == seconds  # type: ignore[arg-type]


PROPS = {"total": 25, "currency": "EUR", "vip": True, "cart": {"items": 3}, "none": None}


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (Condition("total", ">=", 25), True),
        (Condition("total", ">", 25), False),
        (Condition("total", "<", "30"), False),  # a number is not compared with a string
        (Condition("currency", "==", "EUR"), True),
        (Condition("currency", "!=", "USD"), True),
        (Condition("vip", "==", 1), False),  # a boolean is not the number 1
        (Condition("vip", "==", True), True),
        (Condition("cart.items", ">", 2), True),
        (Condition("cart.missing", "exists"), False),
        (Condition("none", "exists"), False),
        (Condition("currency", "in", ["EUR", "GBP"]), True),
        (Condition("total", "in", ["25"]), False),
        (Condition("missing", "!=", "x"), False),
    ],
)  # fmt: skip
def test_conditions(condition: Condition, holds: bool) -> None:
    assert condition.holds(PROPS) is holds


def test_a_trigger_matches_its_event_when_every_condition_holds() -> None:
    trigger = Trigger("t", "cart_abandoned", "x", (Condition("total", ">=", 10),))
    cart = BehaviourEvent("s", "cart_abandoned", 0, "k", {"total": 12})
    assert trigger.matches(cart)
    assert not trigger.matches(BehaviourEvent("s", "cart_abandoned", 0, "k", {"total": 5}))
    assert not trigger.matches(BehaviourEvent("s", "purchase", 0, "k", {"total": 12}))


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    ("now", "zone", "until"),
    [
        ("2026-05-04T22:30:00+00:00", None, "2026-05-05T08:00:00+00:00"),  # evening: next morning
        ("2026-05-04T07:59:00+00:00", "UTC", "2026-05-04T08:00:00+00:00"),  # early: this morning
        ("2026-05-04T08:00:00+00:00", None, None),
        ("2026-05-04T20:59:00+00:00", None, None),
        ("2026-05-04T11:00:00+00:00", "America/New_York", "2026-05-04T12:00:00+00:00"),  # 07:00 EDT
        ("2026-05-04T11:00:00+00:00", "Not/AZone", None),  # unknown zone: UTC
        ("2026-03-29T00:30:00+00:00", "Europe/Berlin", "2026-03-29T06:00:00+00:00"),  # DST night
    ],
)  # fmt: skip
def test_quiet_hours_in_the_subscribers_zone(now: str, zone: str | None, until: str | None) -> None:
    window = QuietHours(21 * 60, 8 * 60)
    expected = ts(until) if until else None
    assert window.deferral(ts(now), zone) == expected


def test_a_quiet_window_within_one_day() -> None:
    lunch = QuietHours(12 * 60, 13 * 60)
    noon = datetime(2026, 5, 4, 12, 15, tzinfo=UTC).timestamp()
    assert lunch.deferral(noon, None) == datetime(2026, 5, 4, 13, 0, tzinfo=UTC).timestamp()
    assert lunch.deferral(noon + 3600, None) is None


def test_caps_per_trigger_and_across_triggers() -> None:
    cart = Trigger("cart", "c", "x", frequency_cap=FrequencyCap(1, 86400))
    other = Trigger("other", "o", "x")
    now = 1_000_000.0
    assert cap_reached([], cart, None, now) is None
    assert cap_reached([("cart", now - 3600)], cart, None, now) == "trigger_cap"
    assert cap_reached([("cart", now - 86400)], cart, None, now) is None, "the window has passed"
    assert cap_reached([("other", now - 60)], cart, None, now) is None
    both = FrequencyCap(2, 86400)
    assert cap_reached([("cart", now - 90000), ("x", now - 60)], other, both, now) is None
    assert cap_reached([("y", now - 120), ("x", now - 60)], other, both, now) == "global_cap"
