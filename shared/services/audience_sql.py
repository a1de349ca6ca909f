"""A campaign's audience as one SQL statement over the subscriber mirror (`subscribers_raw`,
shared/domain/subscriber_mirror.py), so the warehouse selects it instead of the dispatcher
reading every subscriber document.

The segment (shared/domain/segment.py) is compiled to a sqlglot expression in BigQuery's
dialect, every value a query parameter (`@p0`, `@p1` ...), never text in the statement;
`in_dialect` transpiles the same statement for DuckDB in local mode, as the dashboards do. The
SQL means exactly what `Segment.matches` means (tests/unit/test_audience_sql.py checks it on
generated subscribers and segments):

- attributes are JSON text; a value's kind is the first character of its JSON
  (`"` text, `t`/`f` boolean, `[` list, `{` object, `n` null, else a number), read with
  JSON_QUERY; its scalar with JSON_VALUE. A missing or null value matches only `!=`, `not_in`;
  values of different kinds are unequal and never ordered; true is not 1, except for `in` and
  list `contains`, which use Python's `==` (as `matches` does);
- `contains` is case-insensitive substring on text and membership on a list;
- engagement conditions read the human open/click events of their window from `events_raw`,
  bounded on its partition column before deduplicating, as shared/services/engagement.py does.

Eligibility is the dispatcher's (shared/services/audience.py AudiencePlan.eligible): the latest
mirror row of each subscriber, confirmed, not suppressed, not erased, confirmed no later than the
campaign's audience time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlglot
from sqlglot import exp

from shared.domain.errors import InvalidInput
from shared.domain.segment import (
    All,
    Any_,
    Comparison,
    Condition,
    DateRange,
    Engagement,
    Everyone,
    Membership,
    Not,
    Segment,
)
from shared.domain.subscriber import CONFIRMED
from shared.domain.subscriber_mirror import TABLE
from shared.services.engagement import _EVENT_TYPES, DAY, first_copies, timestamp_literal

# The latest row of each subscriber: their current state.
LATEST = (
    f"SELECT * FROM {TABLE} QUALIFY ROW_NUMBER() OVER "
    "(PARTITION BY subscriber_id ORDER BY changed_at DESC, change_id DESC) = 1"
)
# What a render batch needs of each member (shared/domain/messages.py Recipient).
MEMBER_COLUMNS = ("subscriber_id", "email", "first_name", "attributes", "tracking")
_TRUE, _FALSE = exp.true(), exp.false()


@dataclass(frozen=True)
class AudienceQuery:
    """One statement and its named parameters: `sql` in BigQuery's dialect (what BigQuery
    runs), `for_dialect` the same statement for another (DuckDB locally)."""

    tree: exp.Expr
    params: dict[str, Any]

    @property
    def sql(self) -> str:
        return self.tree.sql("bigquery")

    def for_dialect(self, dialect: str) -> str:
        return self.tree.sql(dialect)


@dataclass
class _Params:
    values: dict[str, Any] = field(default_factory=dict)

    def add(self, value: Any) -> exp.Expr:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return exp.Parameter(this=exp.Var(this=name))


def members_query(segment: Segment, audience_at: float, after: str | None = None) -> AudienceQuery:
    """The audience's members (MEMBER_COLUMNS) in id order, from id `after` on."""
    params = _Params()
    where = eligible(segment, audience_at, params)
    if after is not None:
        where = exp.and_(
            where, exp.GT(this=exp.column("subscriber_id"), expression=params.add(after))
        )
    select = (
        exp.select(*MEMBER_COLUMNS)
        .from_(exp.paren(sqlglot.parse_one(LATEST, read="bigquery")).as_("s"))
        .where(where)
        .order_by("subscriber_id")
    )
    return AudienceQuery(select, params.values)


def count_query(segment: Segment, audience_at: float) -> AudienceQuery:
    """How many subscribers the audience holds (column `n`)."""
    params = _Params()
    select = (
        exp.select(exp.Count(this=exp.Star()).as_("n"))
        .from_(exp.paren(sqlglot.parse_one(LATEST, read="bigquery")).as_("s"))
        .where(eligible(segment, audience_at, params))
    )
    return AudienceQuery(select, params.values)


def confirmed_query(audience_at: float) -> AudienceQuery:
    """How many subscribers the mirror holds as confirmed no later than `audience_at` (column
    `n`): compared with the documents' count before a snapshot is taken."""
    select = (
        exp.select(exp.Count(this=exp.Star()).as_("n"))
        .from_(exp.paren(sqlglot.parse_one(LATEST, read="bigquery")).as_("s"))
        .where(sqlglot.parse_one("status = @status AND confirmed_at <= @at", read="bigquery"))
    )
    return AudienceQuery(select, {"status": CONFIRMED, "at": audience_at})


def recheck_query(segment: Segment, audience_at: float, since: float) -> AudienceQuery:
    """The subscribers whose mirror changed after `since` and who no longer belong to the
    audience: the send stage's re-check. Only partitions from `since` on are read: a
    subscriber's latest row since then is their latest row."""
    params = _Params()
    changed = sqlglot.parse_one(
        f"SELECT * FROM {TABLE} WHERE changed_at > @since"
        " QUALIFY ROW_NUMBER() OVER"
        " (PARTITION BY subscriber_id ORDER BY changed_at DESC, change_id DESC) = 1",
        read="bigquery",
    )
    gone = exp.not_(exp.paren(eligible(segment, audience_at, params)))
    select = exp.select("subscriber_id").from_(exp.paren(changed).as_("s")).where(gone)
    return AudienceQuery(select, {**params.values, "since": timestamp_param(since)})


def timestamp_param(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def eligible(segment: Segment, audience_at: float, params: _Params) -> exp.Expr:
    """Confirmed, mailable, confirmed by `audience_at`, not erased, and in the segment."""
    base = [
        exp.column("erased").is_(exp.true()).not_(),
        exp.EQ(this=exp.column("status"), expression=params.add(CONFIRMED)),
        exp.column("suppressed").is_(exp.null()),
        exp.or_(
            exp.column("confirmed_at").is_(exp.null()),
            exp.EQ(this=exp.column("confirmed_at"), expression=exp.Literal.number(0)),
            exp.LTE(this=exp.column("confirmed_at"), expression=params.add(float(audience_at))),
        ),
    ]
    return exp.and_(*base, condition(segment.root, params, audience_at))


def condition(node: Condition, params: _Params, at: float) -> exp.Expr:
    """The SQL of one segment condition: TRUE, FALSE or a predicate that is never NULL."""
    if isinstance(node, Everyone):
        return _TRUE
    if isinstance(node, All):
        return exp.paren(exp.and_(*(condition(p, params, at) for p in node.parts)))
    if isinstance(node, Any_):
        return exp.paren(exp.or_(*(condition(p, params, at) for p in node.parts)))
    if isinstance(node, Not):
        return exp.not_(exp.paren(condition(node.part, params, at)))
    if isinstance(node, Membership):
        contains = exp.In(
            this=params.add(node.name), unnest=exp.Unnest(expressions=[exp.column(node.collection)])
        )
        return _never_null(contains)
    if isinstance(node, DateRange):
        return _date_range(node, params)
    if isinstance(node, Engagement):
        return _engagement(node, at)
    if isinstance(node, Comparison):
        return _never_null(_Operand.of(node).compare(node, params))
    raise InvalidInput(f"a segment condition SQL cannot express: {node!r}", field="segment")


def _never_null(predicate: exp.Expr) -> exp.Expr:
    return exp.func("COALESCE", exp.paren(predicate), _FALSE, dialect="bigquery")


def _date_range(node: DateRange, params: _Params) -> exp.Expr:
    moment = exp.column(node.field)
    parts: list[exp.Expr] = [
        moment.is_(exp.null()).not_(),
        exp.NEQ(this=moment, expression=exp.Literal.number(0)),
    ]
    if node.after is not None:
        parts.append(exp.GTE(this=moment, expression=params.add(float(node.after))))
    if node.before is not None:
        parts.append(exp.LT(this=moment, expression=params.add(float(node.before))))
    return exp.paren(exp.and_(*parts))


def _engagement(node: Engagement, at: float) -> exp.Expr:
    """Subscribers with a human event of the window's type in its days before `at` (the same
    rows EngagementQueries.engaged finds; its literals come from floats and constants)."""
    window = node.window
    since = at - window.days * DAY
    kind = _EVENT_TYPES[window.event_type]
    events = first_copies(f"event_type = '{kind}'", since, at)
    sql = (
        f"SELECT subscriber_id FROM {events}\n"
        "WHERE is_machine IS NOT TRUE AND subscriber_id IS NOT NULL\n"
        f"  AND occurred_at >= {timestamp_literal(since)}\n"
        f"  AND occurred_at <= {timestamp_literal(at)}"
    )
    query = sqlglot.parse_one(sql, read="bigquery")
    return exp.In(this=exp.column("subscriber_id"), query=exp.Subquery(this=query))


# -- comparisons -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Operand:
    """What a comparison reads of a subscriber: its JSON kind character (NULL when missing),
    its scalar as text, and as a number."""

    kind: exp.Expr
    text: exp.Expr
    number: exp.Expr
    elements: exp.Expr | None  # the JSON list's elements (attributes only)

    @classmethod
    def of(cls, node: Comparison) -> _Operand:
        if not node.in_attributes:
            column = exp.column(node.path[0])
            text_kind = exp.If(
                this=column.is_(exp.null()), true=exp.null(), false=exp.Literal.string('"')
            )
            return cls(text_kind, column, exp.null(), None)
        path = exp.JSONPath(
            expressions=[exp.JSONPathRoot(), *(exp.JSONPathKey(this=p) for p in node.path)]
        )
        attributes = exp.column("attributes")
        value = exp.JSONExtractScalar(this=attributes, expression=path.copy())
        kind = exp.Substring(this=exp.JSONExtract(this=attributes, expression=path.copy()),
                             start=exp.Literal.number(1), length=exp.Literal.number(1))  # fmt: skip
        number = exp.TryCast(this=value.copy(), to=exp.DataType.build("DOUBLE"))
        # Only a list is read as one (DuckDB would fail to cast anything else, even where the
        # kind test beside it is false): anything else is looked up in an empty object.
        lists_only = exp.If(this=exp.EQ(this=kind.copy(), expression=exp.Literal.string("[")),
                            true=attributes.copy(), false=exp.Literal.string("{}"))  # fmt: skip
        elements = exp.func(
            "JSON_QUERY_ARRAY",
            lists_only,
            exp.Literal.string(_path_text(node.path)),
            dialect="bigquery",
        )
        return cls(kind, value, number, elements)

    def _is(self, *kinds: str) -> exp.Expr:
        return exp.In(this=self.kind.copy(), expressions=[exp.Literal.string(k) for k in kinds])

    def missing(self) -> exp.Expr:
        return exp.or_(self.kind.copy().is_(exp.null()), self._is("n"))

    def is_number(self) -> exp.Expr:
        return exp.and_(self.missing().not_(), exp.not_(self._is('"', "t", "f", "[", "{", "n")))

    def compare(self, node: Comparison, params: _Params) -> exp.Expr:
        if node.op == "exists":
            return exp.not_(exp.paren(self.missing())) if node.value else exp.paren(self.missing())
        present = self._present(node, params)
        absent = _TRUE if node.op in ("!=", "not_in") else _FALSE
        return exp.If(this=self.missing(), true=absent, false=_never_null(present))

    def _present(self, node: Comparison, params: _Params) -> exp.Expr:
        if node.op == "in":
            return self._among(node.value, params)
        if node.op == "not_in":
            return exp.not_(exp.paren(self._among(node.value, params)))
        if node.op == "contains":
            return self._contains(node.value, params)
        return self._ordered(node.op, node.value, params)

    def _ordered(self, op: str, value: Any, params: _Params) -> exp.Expr:
        """`==`, `!=`, `<` ...: between values of one kind; else only `!=` holds."""
        same_kind, mine, theirs = self._same_kind(value, params)
        compared = _COMPARE[op](mine, theirs)
        return exp.If(this=same_kind, true=compared, false=_TRUE if op == "!=" else _FALSE)

    def _same_kind(self, value: Any, params: _Params) -> tuple[exp.Expr, exp.Expr, exp.Expr]:
        if isinstance(value, bool):
            return self._is("t", "f"), self.text.copy(), params.add("true" if value else "false")
        if isinstance(value, str):
            return self._is('"'), self.text.copy(), params.add(value)
        if isinstance(value, int | float):
            return self.is_number(), self.number.copy(), params.add(float(value))
        return _FALSE, exp.null(), exp.null()  # None: a present value is never of its kind

    def _among(self, values: list[Any], params: _Params) -> exp.Expr:
        """Python's `actual in values`: == without the bool guard (True == 1)."""
        found = [self._equals_loosely(v, params) for v in values]
        return exp.or_(*found) if found else _FALSE

    def _equals_loosely(self, value: Any, params: _Params) -> exp.Expr:
        if isinstance(value, str):
            return exp.and_(
                self._is('"'), exp.EQ(this=self.text.copy(), expression=params.add(value))
            )
        if isinstance(value, bool | int | float):
            is_true = exp.EQ(this=self.text.copy(), expression=exp.Literal.string("true"))
            flag = exp.If(this=is_true, true=exp.Literal.number(1), false=exp.Literal.number(0))
            as_number = exp.If(this=self._is("t", "f"), true=flag, false=self.number.copy())
            equal = exp.EQ(this=as_number, expression=params.add(float(value)))
            return exp.and_(exp.or_(self.is_number(), self._is("t", "f")), equal)
        return _FALSE  # null, lists, objects: a present scalar never equals them

    def _contains(self, value: Any, params: _Params) -> exp.Expr:
        if not isinstance(value, str | bool | int | float):
            return _FALSE
        checks: list[exp.Expr] = []
        if isinstance(value, str):
            found = exp.GT(this=exp.func("STRPOS", exp.Lower(this=self.text.copy()),
                                         exp.Lower(this=params.add(value)), dialect="bigquery"),
                           expression=exp.Literal.number(0))  # fmt: skip
            checks.append(exp.and_(self._is('"'), found))
        if self.elements is not None:
            element = _Operand.element()
            inside = (
                exp.select("1")
                .from_(
                    exp.Unnest(
                        expressions=[self.elements.copy()],
                        alias=exp.TableAlias(columns=[exp.to_identifier("e")]),
                    )
                )
                .where(element._equals_loosely(value, params))
            )
            checks.append(exp.and_(self._is("["), exp.Exists(this=inside)))
        return exp.or_(*checks) if checks else _FALSE

    @classmethod
    def element(cls) -> _Operand:
        """An element `e` of JSON_QUERY_ARRAY (JSON text), as an operand."""
        root = exp.JSONPath(expressions=[exp.JSONPathRoot()])
        e = exp.column("e")
        value = exp.JSONExtractScalar(this=e, expression=root.copy())
        kind = exp.Substring(
            this=e.copy(), start=exp.Literal.number(1), length=exp.Literal.number(1)
        )
        number = exp.TryCast(this=value.copy(), to=exp.DataType.build("DOUBLE"))
        return cls(kind, value, number, None)


def _path_text(path: tuple[str, ...]) -> str:
    for part in path:
        if any(c in part for c in "\"\\'"):
            raise InvalidInput(
                "attribute names with quotes or backslashes cannot be segmented on", field="segment"
            )
    return "$" + "".join(f'."{p}"' for p in path)


_COMPARE = {
    "==": lambda a, b: exp.EQ(this=a, expression=b),
    "!=": lambda a, b: exp.NEQ(this=a, expression=b),
    "<": lambda a, b: exp.LT(this=a, expression=b),
    "<=": lambda a, b: exp.LTE(this=a, expression=b),
    ">": lambda a, b: exp.GT(this=a, expression=b),
    ">=": lambda a, b: exp.GTE(this=a, expression=b),
}
