"""Merge groups: messages share a request only when substitution gives each one back exactly."""

from __future__ import annotations

from contract.fakes.emails import campaign_emails
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.esp.merge_groups import MergeRules, fill, merge_groups, tokens

RULES = MergeRules(marker="[%mp", placeholder=lambda name: f"[%{name}%]")
MAILGUN_LIKE = MergeRules(marker="%recipient", placeholder=lambda name: f"%recipient.{name}%")


def assert_round_trip(parts: list[tuple[str, ...]], rules: MergeRules, keys: list | None = None):
    groups = merge_groups(parts, keys or ["k"] * len(parts), rules)
    members = sorted(m for g in groups for m in g.members)
    assert members == list(range(len(parts))), "every message in exactly one group"
    for group in groups:
        assert len(group.values) == len(group.members)
        for member, values in zip(group.members, group.values, strict=True):
            filled = tuple(fill(t, values, rules) for t in group.templates)
            assert filled == tuple(parts[member])
    return groups


@given(st.text(max_size=200))
def test_tokens_cover_the_text(text: str) -> None:
    assert "".join(tokens(text)) == text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=60), st.text(max_size=60)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([RULES, MAILGUN_LIKE]),
)
def test_substitution_gives_every_message_back_exactly(parts, rules) -> None:
    assert_round_trip(parts, rules)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(["Ann", "Bob", "Zoë", "[%mp0%]", "%recipient.mp0%", "50%", ""]),
        min_size=2,
        max_size=10,
    ),
    st.sampled_from([RULES, MAILGUN_LIKE]),
)
def test_marker_lookalikes_in_values_never_corrupt_a_message(names, rules) -> None:
    parts = [(f"Hi {n}, [%mp", f"Dear {n}%recipient") for n in names] + [
        (f"Hi {n}!", f"Dear {n}%") for n in names
    ]
    assert_round_trip(parts, rules)


def test_rendered_campaign_messages_merge_by_token_shape() -> None:
    names = ["Ann", "Bob", "Zoë", "Mary Ann", "Li", "Jo Jo", ""]
    emails = campaign_emails(names * 3)
    groups = assert_round_trip([(e.html, e.text) for e in emails], RULES)
    by_size = sorted(len(g.members) for g in groups)
    # one-word names (Ann, Bob, Zoë, Li) share one template; two-word names another; none a third
    assert by_size == [3, 6, 12]
    big = max(groups, key=lambda g: len(g.members))
    first = big.values[0]
    assert "Ann" in first.values()
    assert all("[%mp" in t for t in big.templates)
    assert all(v.count("eyJ") <= 1 for v in first.values()), "a value is one token run, not html"


def test_identical_messages_need_no_placeholder() -> None:
    groups = assert_round_trip([("same", "text")] * 5, RULES)
    assert len(groups) == 1
    assert groups[0].variables == ()
    assert groups[0].values == [{}] * 5


def test_different_keys_never_merge() -> None:
    groups = assert_round_trip([("a", "b")] * 4, RULES, keys=["x", "y", "x", "y"])
    assert [g.members for g in groups] == [[0, 2], [1, 3]]


def test_a_message_containing_the_marker_stays_alone() -> None:
    parts = [("Hi Ann", "t"), ("Hi [%mp0%]", "t"), ("Hi Bob", "t")]
    groups = assert_round_trip(parts, RULES)
    assert [g.members for g in groups] == [[0, 2], [1]]
    assert groups[1].values == [{}]


def test_limits_split_groups() -> None:
    parts = [(f"Hi {n} there", "t") for n in "abcdefg"]
    rules = MergeRules(RULES.marker, RULES.placeholder, max_members=3)
    groups = assert_round_trip(parts, rules)
    assert [len(g.members) for g in groups] == [3, 3, 1]

    whole_differs = [("x" * 100,), ("y" * 100,)]
    tight = MergeRules(RULES.marker, RULES.placeholder, max_value_bytes=64)
    assert len(assert_round_trip(whole_differs, tight)) == 2

    many_vars = [(" ".join(f"{c}{i}" for i in range(10)),) for c in "ab"]
    few = MergeRules(RULES.marker, RULES.placeholder, max_variables=5)
    assert len(assert_round_trip(many_vars, few)) == 2


def test_the_same_value_twice_uses_one_placeholder() -> None:
    parts = [(f"<a href='/u?t={t}'>x</a> <a href='/u?t={t}'>y</a>",) for t in ("AAA", "BBB")]
    (group,) = assert_round_trip(parts, RULES)
    assert group.variables == ("mp0",)
    assert group.templates[0].count("[%mp0%]") == 2


def test_text_that_spells_a_placeholder_is_never_merged() -> None:
    for rules in (RULES, MAILGUN_LIKE):
        literal = rules.placeholder("mp0")
        parts = [(f"Hi {name} {literal}",) for name in ("Ann", "Bob", "Cy")]
        groups = assert_round_trip(parts, rules)
        assert [g.members for g in groups] == [[0], [1], [2]]


def test_a_placeholder_next_to_shared_text_never_spells_the_marker() -> None:
    # "%recipient.mp0%" + "recipient.x" would put "%recipient" where no placeholder starts
    parts = [("a!recipient.x",), ("a?recipient.x",)]
    groups = assert_round_trip(parts, MAILGUN_LIKE)
    assert [g.members for g in groups] == [[0], [1]]
    assert len(assert_round_trip(parts, RULES)) == 1  # "[%mp" cannot be spelled that way
