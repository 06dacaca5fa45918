"""Rules as protobuf trees: round trips, problems named by their path in the request, the
INVALID_ARGUMENT status a bad rule becomes, and explanations."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.rpc import error_details_pb2
from hypothesis import HealthCheck, given, settings

from crm.segmentation.v1 import rules_pb2 as pb
from services.segmentation.api.explanation_proto import explanation_to_proto
from services.segmentation.api.rule_proto import from_proto, invalid_argument, to_proto
from services.segmentation.domain import rules as r
from services.segmentation.domain.facts import Facts
from services.segmentation.domain.rules import errors as e
from services.segmentation.tests.fact_strategies import BASES
from services.segmentation.tests.rule_strategies import rules
from services.segmentation.tests.test_rules_parse import EXAMPLES


@pytest.mark.parametrize("text", [t for t, _ in EXAMPLES])
def test_the_issue_examples_as_trees(text: str) -> None:
    rule = r.parse(text)
    wire = to_proto(rule).SerializeToString()
    assert from_proto(pb.Rule.FromString(wire)) == rule


def test_a_tree_reads_as_its_text() -> None:
    tree = pb.Rule(
        all=pb.RuleGroup(
            rules=[
                pb.Rule(
                    comparison=pb.Comparison(
                        field="Orders_Count",
                        operator=pb.OPERATOR_GREATER_OR_EQUAL,
                        value=pb.Value(number_value=3),
                    )
                ),
                pb.Rule(
                    comparison=pb.Comparison(
                        anniversary="attributes.birthday",
                        operator=pb.OPERATOR_BETWEEN,
                        value=pb.Value(
                            range_value=pb.ValueRange(
                                low=pb.Value(moment=pb.MOMENT_TODAY),
                                high=pb.Value(
                                    relative_time=pb.RelativeTime(amount=7, unit=pb.TIME_UNIT_DAYS)
                                ),
                            )
                        ),
                    )
                ),
                pb.Rule(
                    placed_order=pb.PlacedOrder(
                        currency="eur", within=pb.RelativeTime(amount=90, unit=pb.TIME_UNIT_DAYS)
                    )
                ),
            ]
        )
    )
    rule = from_proto(tree)
    expected = "orders_count >= 3 AND anniversary(attributes.birthday) BETWEEN today AND +7d AND placed_order(currency = 'EUR', within 90d)"
    assert r.format(rule) == expected


def test_times_keep_microseconds() -> None:
    v = pb.Value()
    v.time_value.seconds, v.time_value.nanos = 1_800_000_000, 123_456_789
    rule = from_proto(
        pb.Rule(comparison=pb.Comparison(field="created_at", operator=pb.OPERATOR_LESS, value=v))
    )
    assert r.format(rule) == "created_at < date '2027-01-15T08:00:00.123456Z'"


def _cmp(field: str, op: int, value: pb.Value | None = None) -> pb.Rule:
    c = pb.Comparison(field=field, operator=op)  # type: ignore[arg-type]
    if value is not None:
        c.value.CopyFrom(value)
    return pb.Rule(comparison=c)


OK = _cmp("archived", pb.OPERATOR_EQUAL, pb.Value(bool_value=True))
deep = OK
for _ in range(40):
    deep = pb.Rule(negation=deep)

BAD = [
    (pb.Rule(), "rule", e.RULE_SYNTAX),
    (pb.Rule(all=pb.RuleGroup(rules=[OK])), "rule.all", e.RULE_TOO_LARGE),
    (pb.Rule(any=pb.RuleGroup(rules=[OK, pb.Rule()])), "rule.any.rules[1]", e.RULE_SYNTAX),
    (
        pb.Rule(all=pb.RuleGroup(rules=[OK, _cmp("orders_cnt", pb.OPERATOR_IS_SET)])),
        "rule.all.rules[1].comparison.field",
        e.UNKNOWN_FIELD,
    ),
    (
        pb.Rule(negation=_cmp("tags", pb.OPERATOR_GREATER, pb.Value(number_value=3))),
        "rule.negation.comparison",
        e.TYPE_MISMATCH,
    ),
    (
        _cmp("orders_count", pb.OPERATOR_UNSPECIFIED, pb.Value(number_value=3)),
        "rule.comparison.operator",
        e.RULE_SYNTAX,
    ),
    (
        pb.Rule(comparison=pb.Comparison(operator=pb.OPERATOR_IS_SET)),
        "rule.comparison",
        e.RULE_SYNTAX,
    ),
    (
        _cmp("orders_count", pb.OPERATOR_GREATER, pb.Value(number_value=float("nan"))),
        "rule.comparison.value.number_value",
        e.BAD_NUMBER,
    ),
    (_cmp("orders_count", pb.OPERATOR_GREATER, pb.Value()), "rule.comparison.value", e.RULE_SYNTAX),
    (
        _cmp(
            "created_at",
            pb.OPERATOR_GREATER,
            pb.Value(date_value=pb.CalendarDate(year=2026, month=2, day=30)),
        ),
        "rule.comparison.value.date_value",
        e.BAD_DATE,
    ),
    (
        _cmp("created_at", pb.OPERATOR_GREATER, pb.Value(relative_time=pb.RelativeTime(amount=3))),
        "rule.comparison.value.relative_time.unit",
        e.BAD_DURATION,
    ),
    (
        _cmp("created_at", pb.OPERATOR_GREATER, pb.Value(moment=pb.MOMENT_UNSPECIFIED)),
        "rule.comparison.value",
        e.RULE_SYNTAX,
    ),
    (
        _cmp(
            "orders_count",
            pb.OPERATOR_BETWEEN,
            pb.Value(
                range_value=pb.ValueRange(
                    low=pb.Value(number_value=1), high=pb.Value(list_value=pb.ValueList())
                )
            ),
        ),
        "rule.comparison.value.range_value.high.list_value",
        e.TYPE_MISMATCH,
    ),
    (
        _cmp("orders_count", pb.OPERATOR_IN, pb.Value(list_value=pb.ValueList())),
        "rule.comparison",
        e.TYPE_MISMATCH,
    ),
    (
        pb.Rule(
            placed_order=pb.PlacedOrder(within=pb.RelativeTime(amount=-3, unit=pb.TIME_UNIT_DAYS))
        ),
        "rule.placed_order.within",
        e.BAD_DURATION,
    ),
    (
        pb.Rule(
            placed_order=pb.PlacedOrder(count=pb.CountCondition(operator=pb.OPERATOR_IN, value=1))
        ),
        "rule.placed_order.count",
        e.TYPE_MISMATCH,
    ),
    (
        pb.Rule(placed_order=pb.PlacedOrder(total=pb.CountCondition(value=1))),
        "rule.placed_order.total.operator",
        e.RULE_SYNTAX,
    ),
    (pb.Rule(purchased=pb.Purchased()), "rule.purchased", e.MISSING_ARGUMENT),
    (pb.Rule(in_segment=pb.InSegment()), "rule.in_segment", e.BAD_ARGUMENT),
    (pb.Rule(random_bucket=pb.RandomBucket(low=5, high=500)), "rule.random_bucket", e.BAD_ARGUMENT),
    (deep, "rule" + ".negation" * 32, e.RULE_TOO_LARGE),
]


@pytest.mark.parametrize(("tree", "path", "reason"), BAD, ids=[p for _, p, _ in BAD])
def test_a_bad_tree_names_the_path_of_its_problem(tree: pb.Rule, path: str, reason: str) -> None:
    with pytest.raises(r.RuleError) as caught:
        from_proto(tree)
    v = caught.value.violations[0]
    assert (v.field_path, v.reason, v.line, v.column) == (path, reason, 0, 0), v


def _bad_request(err: r.RuleError, field: str) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    status = invalid_argument(err, field)
    bad = error_details_pb2.BadRequest()
    assert status.to_status().details[1].Unpack(bad)
    return status.code, [(v.field, v.description) for v in bad.field_violations]


def test_a_bad_rule_is_invalid_argument_naming_line_and_column() -> None:
    with pytest.raises(r.RuleError) as caught:
        r.parse("orders_count >= 3 AND\n  tags > 3")
    code, violations = _bad_request(caught.value, "rule_text")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert violations == [
        ("rule_text", "line 2, column 8: tags is a set: write tags CONTAINS 'vip'")
    ]
    assert invalid_argument(caught.value, "rule_text").reason == e.TYPE_MISMATCH
    with pytest.raises(r.RuleError) as caught:
        from_proto(pb.Rule(negation=pb.Rule()), "segment.rule")
    assert _bad_request(caught.value, "segment.rule")[1][0][0] == "segment.rule.negation"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(BASES[0], wide=True))
def test_proto_round_trip(rule: r.Rule) -> None:
    wire = to_proto(rule).SerializeToString(deterministic=True)
    back = from_proto(pb.Rule.FromString(wire))
    assert back == rule
    assert to_proto(back).SerializeToString(deterministic=True) == wire


def test_an_explanation_as_protobuf() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    f = Facts(
        "c",
        tags=frozenset({"staff", "b2b"}),
        time_zone="Europe/Berlin",
        attributes={"birthday": datetime(1990, 3, 5, tzinfo=UTC)},
    )
    rule = r.parse(
        "NOT tags CONTAINS 'staff' OR anniversary(attributes.birthday) BETWEEN today AND +7d OR last_order_at > -30d"
    )
    x = explanation_to_proto(r.explain(rule, f, now))
    assert (x.text, x.value) == (r.format(rule), True)
    tags, birthday, last = x.parts
    assert not tags.value and tags.parts[0].facts[0].value.list_value == pb.ValueList(
        values=[pb.Value(string_value="b2b"), pb.Value(string_value="staff")]
    )
    names = [fact.name for fact in birthday.facts]
    assert names == ["attributes.birthday", "anniversary(attributes.birthday)", "today", "+7d"]
    assert birthday.facts[1].value.date_value == pb.CalendarDate(year=2026, month=3, day=5)
    assert birthday.facts[0].value.time_value.ToDatetime(tzinfo=UTC) == datetime(
        1990, 3, 5, tzinfo=UTC
    )
    assert last.facts[0].name == "last_order_at" and not last.facts[0].HasField("value")
