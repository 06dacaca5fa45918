"""The rule language's text: every construct of the issue's examples, canonical formatting,
errors with their line and column, and parse(format(r)) == r for any rule."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings

from services.segmentation.domain import rules as r
from services.segmentation.domain.rules import errors as e
from services.segmentation.tests.fact_strategies import BASES
from services.segmentation.tests.rule_strategies import rules

F = r.Field
TRUE = r.Boolean(True)


def _c(path: str, op: r.Op, value: r.Value | None = None) -> r.Comparison:
    return r.Comparison(F(path), op, value)


EXAMPLES = [
    (
        "orders_count >= 3 AND last_order_at > -30d AND consent.email = 'subscribed' "
        "AND NOT tags CONTAINS 'staff'",
        r.And(
            (
                _c("orders_count", r.Op.GE, r.Number(3)),
                _c("last_order_at", r.Op.GT, r.Relative(-30, r.Unit.DAYS)),
                _c("consent.email", r.Op.EQ, r.Text("subscribed")),
                r.Not(_c("tags", r.Op.CONTAINS, r.Text("staff"))),
            )
        ),
    ),
    (
        "placed_order(count >= 2, within 90d)",
        r.PlacedOrder(r.CountTest(r.Op.GE, 2), r.Relative(90, r.Unit.DAYS)),
    ),
    (
        "purchased(sku = 'TEA-1', within 1y)",
        r.Purchased(("TEA-1",), within=r.Relative(1, r.Unit.YEARS)),
    ),
    (
        "abandoned_cart(within 7d) AND NOT recovered",
        r.And(
            (
                r.AbandonedCart(r.Relative(7, r.Unit.DAYS)),
                r.Not(_c("recovered", r.Op.EQ, TRUE)),
            )
        ),
    ),
    ("in_segment('vip')", r.InSegment("vip")),
    (
        "anniversary(attributes.birthday) BETWEEN today AND +7d",
        r.Comparison(
            r.Anniversary(F("attributes.birthday")),
            r.Op.BETWEEN,
            r.Range(r.Today(), r.Relative(7, r.Unit.DAYS)),
        ),
    ),
    ("random_bucket(0, 10)", r.RandomBucket(0, 10)),
]


@pytest.mark.parametrize(("text", "tree"), EXAMPLES, ids=[t for t, _ in EXAMPLES])
def test_the_issue_examples_parse_and_print_back(text: str, tree: r.Rule) -> None:
    assert r.parse(text) == tree
    assert r.format(tree) == text
    assert r.parse(r.format(tree)) == tree


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (
            "orders_count>=3 and NOT(archived OR recovered)",
            "orders_count >= 3 AND NOT (archived OR recovered)",
        ),
        (
            "Orders_Count <> 1 Or Revenue.eur BETWEEN 10 and 20.50",
            "orders_count != 1 OR revenue.EUR BETWEEN 10 AND 20.5",
        ),
        ("a_is_set_field IS SET", None),  # unknown field: checked below
        (
            "locale IN ('en','de') AND email_domain not in ('x.com')",
            "locale IN ('en', 'de') AND email_domain NOT IN ('x.com')",
        ),
        ("attributes.plan = 'it''s'", "attributes.plan = 'it''s'"),
        (
            "created_at IS NOT SET or created_at < date '2026-11-27'",
            "created_at IS NOT SET OR created_at < date '2026-11-27'",
        ),
        (
            "created_at >= DATE '2026-11-27T10:00:00+01:00'",
            "created_at >= date '2026-11-27T09:00:00Z'",
        ),
        (
            "created_at >= date '2026-11-27t09:00:00.250z'",
            "created_at >= date '2026-11-27T09:00:00.250000Z'",
        ),
        (
            "last_order_at < NOW and created_at > TODAY",
            "last_order_at < now AND created_at > today",
        ),
        (
            "first_order_at > -12h AND last_order_at <= +2w AND created_at < -1y AND created_at > -90s AND created_at > -5m",
            None,
        ),
        ("placed_order(within 30d, count = 0)", "placed_order(count = 0, within 30d)"),
        ("placed_order(count >= 1)", "placed_order()"),
        (
            "placed_order(currency = 'eur', total >= 5000, within +90d)",
            "placed_order(total >= 5000, currency = 'EUR', within 90d)",
        ),
        ("purchased(sku in ('A', 'B'), count >= 2)", "purchased(sku IN ('A', 'B'), count >= 2)"),
        ("abandoned_cart()", "abandoned_cart()"),
        (
            "archived AND (recovered AND attributes.vip)",
            "archived AND (recovered AND attributes.vip)",
        ),
        ("(archived OR recovered) OR attributes.vip", "(archived OR recovered) OR attributes.vip"),
        ("archived OR recovered AND attributes.vip", "archived OR recovered AND attributes.vip"),
        ("NOT NOT archived", "NOT NOT archived"),
        ("attributes.score >= -1.5e3", "attributes.score >= -1500"),
        ("attributes.score = 0.1", "attributes.score = 0.1"),
        ("attributes.vip = false", "attributes.vip = false"),
        ("attributes.vip = TRUE", "attributes.vip"),
        ("((((archived))))", "archived"),
        ("anniversary(created_at) = today", "anniversary(created_at) = today"),
    ],
)
def test_canonical_text(text: str, canonical: str | None) -> None:
    if canonical is None and "a_is_set" in text:
        with pytest.raises(r.RuleError):
            r.parse(text)
        return
    tree = r.parse(text)
    if canonical is not None:
        assert r.format(tree) == canonical
    assert r.parse(r.format(tree)) == tree


def test_keywords_inside_names_are_names() -> None:
    assert r.parse("attributes.android") == _c("attributes.android", r.Op.EQ, TRUE)
    assert r.parse("attributes.set IS SET") == _c("attributes.set", r.Op.IS_SET)
    assert r.parse("attributes.in = 'x'") == _c("attributes.in", r.Op.EQ, r.Text("x"))
    assert r.parse("attributes.orders_today >= 1") == _c(
        "attributes.orders_today", r.Op.GE, r.Number(1)
    )


def test_values_are_what_they_say() -> None:
    c = r.parse("created_at BETWEEN date '2024-02-29' AND date '2024-03-01T23:59:59.999999Z'")
    assert isinstance(c, r.Comparison) and isinstance(c.value, r.Range)
    assert c.value.low == r.OnDate(date(2024, 2, 29))
    assert c.value.high == r.AtTime(datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC))
    units = r.parse(
        "created_at > -1s AND created_at > -1m AND created_at > -1h AND created_at > -1w"
    )
    assert isinstance(units, r.And)
    found = [
        p.value.unit
        for p in units.parts
        if isinstance(p, r.Comparison) and isinstance(p.value, r.Relative)
    ]
    assert found == [r.Unit.SECONDS, r.Unit.MINUTES, r.Unit.HOURS, r.Unit.WEEKS]
    assert r.Relative(1, r.Unit.YEARS).seconds == 365 * 86_400


ERRORS = [
    # (text, reason, line, column)
    ("orders_count >=", e.RULE_SYNTAX, 1, 16),
    ("orders_count >= 3 AND", e.RULE_SYNTAX, 1, 22),
    ("orders_count >= 3 3", e.RULE_SYNTAX, 1, 19),
    ("orders_count # 3", e.RULE_SYNTAX, 1, 14),
    ("locale = 'en", e.RULE_SYNTAX, 1, 10),
    ("(archived", e.RULE_SYNTAX, 1, 10),
    ("archived AND AND recovered", e.RULE_SYNTAX, 1, 14),
    ("archived\r\nOR\r\n  OR recovered", e.RULE_SYNTAX, 3, 3),
    ("", e.RULE_SYNTAX, 1, 1),
    ("last_order_at > -30 days", e.RULE_SYNTAX, 1, 21),
    ("orders_count >= 3 AND\n  orders_cnt > 1", e.UNKNOWN_FIELD, 2, 3),
    ("attributes.Bad-Name = 1", e.RULE_SYNTAX, 1, 15),
    ("consent.fax = 'subscribed'", e.UNKNOWN_FIELD, 1, 1),
    ("revenue.EURO > 1", e.UNKNOWN_FIELD, 1, 1),
    ("attributes > 1", e.UNKNOWN_FIELD, 1, 1),
    ("tags > 3", e.TYPE_MISMATCH, 1, 6),
    ("tags = 'vip'", e.TYPE_MISMATCH, 1, 6),
    ("orders_count = 'three'", e.TYPE_MISMATCH, 1, 14),
    ("locale > 'en'", e.TYPE_MISMATCH, 1, 8),
    ("created_at > '2026-01-01'", e.TYPE_MISMATCH, 1, 12),
    ("archived < true", e.TYPE_MISMATCH, 1, 10),
    ("locale CONTAINS 'e'", e.TYPE_MISMATCH, 1, 1),
    ("orders_count", e.TYPE_MISMATCH, 1, 1),
    ("orders_count IN (1, 'a')", e.TYPE_MISMATCH, 1, 1),
    ("anniversary(locale) = today", e.TYPE_MISMATCH, 1, 1),
    ("anniversary(created_at) = now", e.TYPE_MISMATCH, 1, 27),
    ("anniversary(created_at) < +3h", e.BAD_DURATION, 1, 27),
    ("anniversary(created_at)", e.TYPE_MISMATCH, 1, 1),
    ("last_order_at > 30d", e.BAD_DURATION, 1, 17),
    ("last_order_at > -100000y", e.BAD_DURATION, 1, 17),
    ("placed_order(within -3d)", e.BAD_DURATION, 1, 21),
    ("placed_order(within today)", e.BAD_DURATION, 1, 14),
    ("created_at > date '2026-02-30'", e.BAD_DATE, 1, 19),
    ("created_at > date '2026-02-03T10:00:00'", e.BAD_DATE, 1, 19),
    ("created_at > date 'tomorrow'", e.BAD_DATE, 1, 19),
    ("attributes.score > 1e999", e.BAD_NUMBER, 1, 20),
    ("random_bucket(1.5, 3)", e.BAD_NUMBER, 1, 15),
    ("random_bucket(50, 10)", e.BAD_ARGUMENT, 1, 1),
    ("random_bucket(1)", e.WRONG_ARITY, 1, 1),
    ("in_segment(vip)", e.WRONG_ARITY, 1, 1),
    ("in_segment('')", e.BAD_ARGUMENT, 1, 1),
    ("anniversary('x') = today", e.WRONG_ARITY, 1, 1),
    ("bought(sku = 'x')", e.UNKNOWN_FUNCTION, 1, 1),
    ("placed_order(colour = 'red')", e.UNKNOWN_ARGUMENT, 1, 14),
    ("placed_order(count >= 1, count >= 2)", e.DUPLICATE_ARGUMENT, 1, 26),
    ("placed_order(count >= 1.5)", e.BAD_NUMBER, 1, 23),
    ("placed_order(currency = 'euro')", e.BAD_ARGUMENT, 1, 1),
    ("placed_order(currency != 'EUR')", e.BAD_ARGUMENT, 1, 14),
    ("purchased(within 1y)", e.MISSING_ARGUMENT, 1, 1),
    ("purchased(sku > 'A')", e.BAD_ARGUMENT, 1, 11),
    ("placed_order() = true", e.TYPE_MISMATCH, 1, 1),
    ("locale = 'a\x00b'", e.BAD_TEXT, 1, 10),
]


@pytest.mark.parametrize(("text", "reason", "line", "column"), ERRORS, ids=[t for t, *_ in ERRORS])
def test_a_bad_rule_names_its_line_and_column(
    text: str, reason: str, line: int, column: int
) -> None:
    with pytest.raises(r.RuleError) as caught:
        r.parse(text)
    v = caught.value.violations[0]
    assert (v.reason, v.line, v.column) == (reason, line, column), v
    assert v.description.startswith(f"line {line}, column {column}: ")
    assert v.message


def test_every_semantic_problem_is_reported_at_once() -> None:
    with pytest.raises(r.RuleError) as caught:
        r.parse("tags > 3 OR\nnope = 1 OR locale > 'x'")
    found = [(v.reason, v.line, v.column) for v in caught.value.violations]
    assert found == [(e.TYPE_MISMATCH, 1, 6), (e.UNKNOWN_FIELD, 2, 1), (e.TYPE_MISMATCH, 2, 20)]
    assert str(caught.value).endswith("(+2 more)")


def test_limits() -> None:
    deep = "NOT " * 40 + "archived"
    with pytest.raises(r.RuleError) as caught:
        r.parse(deep)
    assert caught.value.reason == e.RULE_TOO_LARGE
    very_deep = "NOT (" * 5000 + "archived" + ")" * 5000
    with pytest.raises(r.RuleError) as caught:
        r.parse(very_deep)
    assert caught.value.reason == e.RULE_TOO_LARGE
    assert r.parse("NOT " * 31 + "archived")
    with pytest.raises(r.RuleError) as caught:
        r.parse(" OR ".join(["archived"] * 1001))
    assert caught.value.reason == e.RULE_TOO_LARGE
    with pytest.raises(r.RuleError) as caught:
        r.parse("locale IN (" + ", ".join(["'a'"] * 1001) + ")")
    assert caught.value.reason == e.TYPE_MISMATCH


def test_problems_of_trees_that_text_cannot_write() -> None:
    lonely = r.And((r.InSegment("a"),))
    assert [reason for _, reason, _ in r.problems(lonely)] == [e.RULE_TOO_LARGE]
    no_value = _c("orders_count", r.Op.GE)
    assert [reason for _, reason, _ in r.problems(no_value)] == [e.TYPE_MISMATCH]
    naive = _c("created_at", r.Op.GT, r.AtTime(datetime(2026, 1, 1)))
    assert [reason for _, reason, _ in r.problems(naive)] == [e.BAD_DATE]
    nested = _c("orders_count", r.Op.BETWEEN, r.Range(r.Number(1), r.Items((r.Number(2),))))  # type: ignore[arg-type]
    assert r.problems(nested)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(BASES[0], wide=True))
def test_parse_of_format_is_the_rule(rule: r.Rule) -> None:
    assert r.problems(rule) == []
    text = r.format(rule)
    assert r.parse(text) == rule
    assert r.format(r.parse(text)) == text
