"""Rules as SQL over the facts tables (facts_tables.py): the bulk evaluator's WHERE clause.

``compile_rule(rule, now)`` gives ``(sql, params)``: a boolean expression over ``c``, a row of
``contacts``, and its parameters for asyncpg. Placeholders are numbered from ``first`` (1 by
default; pass ``first=len(your_params) + 1`` to append the fragment to a query of your own):
``$first`` is always ``now``, the rule's values follow in order. The SQL depends on the rule
only, never on ``now``, so a prepared statement serves every instant.

It gives exactly what ``evaluate`` gives (property-tested against PostgreSQL):

- Erased contacts and merged ones (``merged_into`` set) are never members: the fragment says
  so itself (``NOT c.erased AND c.merged_into IS NULL AND (…)``).
- Each condition is wrapped in ``COALESCE(…, false)``: SQL's unknown is settled as false at
  the condition, so NOT, AND and OR work on true and false only, as in Python.
- Order facts, purchases, carts and memberships are read by correlated sub-queries on
  ``contact_id`` (their indexes lead with it). Relative times add a fixed number of seconds
  (an ``interval '… seconds'``: no calendar, no session time zone); ``today``, ``date '…'`` and
  anniversaries use ``c.time_zone`` ('' is UTC), local midnight resolved by PostgreSQL.
- Tables are named without a schema (the search path decides) unless ``schema`` is given.
- ``c.time_zone`` must be '' or a zone PostgreSQL knows (contacts accepts IANA names only):
  an unknown name makes the statement fail where Python reads it as UTC. Both sides read the
  same tz rules only if their tz databases agree (they do for the zones the tests use).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from services.segmentation.domain import rules as r
from services.segmentation.domain.rules.check import value_kind
from services.segmentation.domain.rules.fields import split

_SQL_OPS = {r.Op.EQ: "=", r.Op.NE: "<>", r.Op.LT: "<", r.Op.LE: "<=", r.Op.GT: ">", r.Op.GE: ">="}
_CASTS = {"text": "text", "number": "numeric", "bool": "boolean", "time": "timestamptz"}
_ATTRIBUTE_KEYS = {"text": "->> 's'", "number": "-> 'n'", "bool": "-> 'b'", "time": "->> 't'"}
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TZ = "COALESCE(NULLIF(c.time_zone, ''), 'UTC')"


class Compiled(NamedTuple):
    sql: str
    params: list[object]  # params[0] is now


def compile_rule(
    rule: r.Rule, now: datetime, *, first: int = 1, schema: str | None = None
) -> Compiled:
    """The WHERE fragment selecting the members of ``rule`` at ``now``, and its parameters."""
    if schema is not None and not _SCHEMA.fullmatch(schema):
        raise ValueError(f"not a schema name: {schema!r}")
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    b = _Builder(first, schema)
    body = b.rule(rule)
    # $first is mentioned whatever the rule, so that the numbering holds (and types) for all
    live = f"NOT c.erased AND c.merged_into IS NULL AND {b.now} IS NOT NULL"
    return Compiled(f"({live} AND {body})", [now, *b.params])


def members_query(rule: r.Rule, now: datetime, *, schema: str | None = None) -> Compiled:
    """``SELECT c.contact_id`` of every member at ``now``, in id order."""
    sql, params = compile_rule(rule, now, schema=schema)
    contacts = f'"{schema}".contacts' if schema else "contacts"
    return Compiled(f"SELECT c.contact_id FROM {contacts} c WHERE {sql} ORDER BY 1", params)


class _Builder:
    def __init__(self, first: int, schema: str | None) -> None:
        self.first, self.schema = first, schema
        self.params: list[object] = []
        self.now = f"${first}::timestamptz"
        self.today = f"(({self.now} AT TIME ZONE {_TZ})::date)"

    def p(self, value: object, cast: str) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params)}::{cast}"

    def t(self, table: str, alias: str) -> str:
        name = f'"{self.schema}".{table}' if self.schema else table
        return f"{name} {alias}"

    def rule(self, rule: r.Rule) -> str:
        if isinstance(rule, r.And | r.Or):
            joiner = " AND " if isinstance(rule, r.And) else " OR "
            return "(" + joiner.join(self.rule(p) for p in rule.parts) + ")"
        if isinstance(rule, r.Not):
            return f"(NOT {self.rule(rule.part)})"
        return f"COALESCE({self.condition(rule)}, false)"

    def condition(self, rule: r.Rule) -> str:
        if isinstance(rule, r.Comparison):
            return self.comparison(rule)
        if isinstance(rule, r.PlacedOrder):
            where = ["NOT o.cancelled"]
            if rule.currency:
                where.append(f"o.currency = {self.p(rule.currency, 'text')}")
            if rule.total is not None:
                total = self.p(rule.total.value, "bigint")
                where.append(f"o.total {_SQL_OPS[rule.total.op]} {total}")
            where += self.window("o.place_time", rule.within)
            return self.counted("count(*)", "orders", "o", where, rule.count)
        if isinstance(rule, r.Purchased):
            cancelled = (
                f"SELECT 1 FROM {self.t('orders', 'o')} WHERE o.order_id = p.order_id"
                " AND o.contact_id = c.contact_id AND o.cancelled"
            )
            skus = self.p(list(rule.skus), "text[]")
            where = [f"p.sku = ANY({skus})", f"NOT EXISTS ({cancelled})"]
            where += self.window("p.time", rule.within)
            return self.counted("count(DISTINCT p.order_id)", "purchases", "p", where, rule.count)
        if isinstance(rule, r.AbandonedCart):
            where = ["k.abandoned_time IS NOT NULL", *self.window("k.abandoned_time", rule.within)]
            carts = self.t("carts", "k")
            mine = "k.contact_id = c.contact_id"
            return f"EXISTS (SELECT 1 FROM {carts} WHERE {mine} AND {' AND '.join(where)})"
        if isinstance(rule, r.InSegment):
            key = self.p(rule.key, "text")
            return (
                f"EXISTS (SELECT 1 FROM {self.t('memberships', 'm')}"
                f" WHERE m.contact_id = c.contact_id AND m.segment_key = {key})"
            )
        if isinstance(rule, r.RandomBucket):
            low, high = self.p(rule.low, "int"), self.p(rule.high, "int")
            return f"(c.bucket >= {low} AND c.bucket < {high})"
        raise TypeError(f"not a rule: {rule!r}")

    def window(self, column: str, within: r.Relative | None) -> list[str]:
        if within is None:
            return []
        return [f"{column} > {self.shifted(-within.seconds)}", f"{column} <= {self.now}"]

    def shifted(self, seconds: int) -> str:
        return f"({self.now} + interval '{int(seconds)} seconds')"

    def counted(self, what: str, table: str, alias: str, where: list[str], t: r.CountTest) -> str:
        query = f"SELECT {what} FROM {self.t(table, alias)} WHERE {alias}.contact_id = c.contact_id"
        test = f"{_SQL_OPS[t.op]} {self.p(t.value, 'bigint')}"
        return f"(({query} AND {' AND '.join(where)}) {test})"

    # --- comparisons --------------------------------------------------------------------------

    def comparison(self, c: r.Comparison) -> str:
        if c.op is r.Op.IS_SET or c.op is r.Op.IS_NOT_SET:
            return ("" if c.op is r.Op.IS_SET else "NOT ") + self.present(c.left)
        if c.op is r.Op.CONTAINS:
            assert isinstance(c.value, r.Text)
            return f"({self.p(c.value.value, 'text')} = ANY(c.tags))"
        values = r.ast.bounds(c.value)
        kind = value_kind(values[0])
        as_date = isinstance(c.left, r.Anniversary)
        if isinstance(c.left, r.Anniversary):
            left = self.anniversary(c.left.field)
        else:
            left = self.field(c.left, kind)
        if c.op is r.Op.IN or c.op is r.Op.NOT_IN:
            items = [v.value for v in values if isinstance(v, r.Text | r.Number)]
            array = self.p(
                [_number(x) if kind == "number" else x for x in items], _CASTS[kind] + "[]"
            )
            return f"({left} = ANY({array}))" if c.op is r.Op.IN else f"({left} <> ALL({array}))"
        resolved = [self.value(v, kind, as_date) for v in values]
        if c.op is r.Op.BETWEEN:
            return f"({left} >= {resolved[0]} AND {left} <= {resolved[1]})"
        return f"({left} {_SQL_OPS[c.op]} {resolved[0]})"

    def value(self, v: r.Scalar, kind: str, as_date: bool) -> str:
        if isinstance(v, r.Text | r.Boolean):
            return self.p(v.value, _CASTS[kind])
        if isinstance(v, r.Number):
            return self.p(_number(v.value), "numeric")
        if as_date:
            if isinstance(v, r.Relative):
                return f"({self.today} + {int(v.amount * (v.unit.days or 0))})"
            return self.today if isinstance(v, r.Today) else self.p(_date(v), "date")
        if isinstance(v, r.Relative):
            return self.shifted(v.seconds)
        if isinstance(v, r.Now):
            return self.now
        if isinstance(v, r.Today):
            return f"({self.today}::timestamp AT TIME ZONE {_TZ})"
        if isinstance(v, r.OnDate):
            return f"({self.p(v.value, 'date')}::timestamp AT TIME ZONE {_TZ})"
        assert isinstance(v, r.AtTime)
        return self.p(v.value, "timestamptz")

    def present(self, left: r.Field | r.Anniversary) -> str:
        if isinstance(left, r.Anniversary):
            return f"({self.anniversary(left.field)} IS NOT NULL)"
        head, key = split(left.path)
        if head == "tags":
            return "(cardinality(c.tags) > 0)"
        if head == "attributes":
            return f"((c.attributes -> {self.p(key, 'text')}) IS NOT NULL)"
        return f"({self.field(left, 'any')} IS NOT NULL)"

    def field(self, f: r.Field, kind: str) -> str:
        """The field's value as SQL, NULL when unset (attributes: as ``kind``)."""
        head, key = split(f.path)
        orders = f"FROM {self.t('orders', 'o')} WHERE o.contact_id = c.contact_id"
        if head == "orders_count":
            return f"(SELECT count(*) {orders} AND NOT o.cancelled)"
        if head == "refunds_count":
            return f"(SELECT count(*) {orders} AND o.refunded > 0)"
        if head in ("first_order_at", "last_order_at"):
            agg = "min" if head == "first_order_at" else "max"
            return f"(SELECT {agg}(o.place_time) {orders} AND NOT o.cancelled)"
        if head.startswith("rfm_"):
            column = "grp" if head == "rfm_group" else head[4:]
            return (
                f"(SELECT s.{column} FROM {self.t('rfm_scores', 's')}"
                f" WHERE s.contact_id = c.contact_id AND s.currency = {self.p(key, 'text')})"
            )
        if head in ("revenue", "aov"):
            live = f"{orders} AND NOT o.cancelled AND o.currency = {self.p(key, 'text')}"
            if head == "revenue":
                return f"(SELECT COALESCE(sum(o.total - o.refunded), 0) {live})"
            half_up = "floor((2 * sum(o.total - o.refunded) + count(*)) / NULLIF(2 * count(*), 0))"
            return f"(SELECT {half_up} {live})"
        if head in ("locale", "time_zone", "email_domain"):
            return f"NULLIF(c.{head}, '')"
        if head in ("created_at", "archived"):
            return f"c.{head}"
        if head == "attributes":
            cast = _CASTS.get(kind, "text")
            name, inner = self.p(key, "text"), _ATTRIBUTE_KEYS.get(kind, "")
            return f"((c.attributes -> {name} {inner})::{cast})"
        if head == "consent":
            return f"NULLIF(c.consent ->> {self.p(key, 'text')}, '')"
        if head == "suppressed":
            return f"({self.p(key, 'text')} = ANY(c.suppressed))"
        if head == "recovered":
            latest = (
                f"SELECT max(k2.abandoned_time) FROM {self.t('carts', 'k2')}"
                " WHERE k2.contact_id = c.contact_id"
            )
            return (
                f"(SELECT bool_or(k.recovered) FROM {self.t('carts', 'k')}"
                f" WHERE k.contact_id = c.contact_id AND k.abandoned_time = ({latest}))"
            )
        raise ValueError(f"unknown field {f.path!r}")

    def anniversary(self, f: r.Field) -> str:
        """The next occurrence on or after today (local) of the month and day (UTC) of ``f``."""
        v = self.field(f, "time")
        on = (
            "LEAST(make_date({y}, a.m, 1) + (a.d - 1),"
            " (make_date({y}, a.m, 1) + interval '1 month')::date - 1)"
        )
        return (
            f"(SELECT CASE WHEN a.o1 >= a.t THEN a.o1 ELSE a.o2 END FROM (SELECT a.t,"
            f" {on.format(y='a.y')} AS o1, {on.format(y='a.y + 1')} AS o2 FROM ("
            f"SELECT {self.today} AS t, extract(year FROM {self.today})::int AS y,"
            f" extract(month FROM {v} AT TIME ZONE 'UTC')::int AS m,"
            f" extract(day FROM {v} AT TIME ZONE 'UTC')::int AS d) a) a)"
        )


def _number(x: float | str) -> Decimal:
    """A rule's number exactly as written (its shortest repr), so SQL compares what Python
    compares."""
    return Decimal(repr(float(x)))


def _date(v: r.Scalar) -> object:
    assert isinstance(v, r.OnDate)
    return v.value
