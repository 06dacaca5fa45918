"""What a rule depends on, the segments it names, and cycles between segments."""

from __future__ import annotations

import pytest

from services.segmentation.domain import rules as r
from services.segmentation.domain.rules import errors as e

G = r.FactGroup


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("orders_count >= 3", {G.ORDERS}),
        ("last_order_at > -30d", {G.ORDERS, G.TIME}),
        ("last_order_at > date '2026-01-01T00:00:00Z'", {G.ORDERS}),
        ("last_order_at > date '2026-01-01'", {G.ORDERS, G.PROFILE}),
        ("last_order_at > today", {G.ORDERS, G.PROFILE, G.TIME}),
        ("created_at > date '2026-01-01'", {G.PROFILE}),
        ("consent.email = 'subscribed' AND NOT suppressed.email", {G.CONSENT}),
        ("NOT tags CONTAINS 'staff' OR locale = 'de'", {G.PROFILE}),
        ("placed_order(count >= 2, within 90d)", {G.ORDERS, G.TIME}),
        ("placed_order(count >= 2)", {G.ORDERS}),
        ("purchased(sku = 'TEA-1')", {G.PURCHASES, G.ORDERS}),
        ("abandoned_cart(within 7d) AND NOT recovered", {G.CARTS, G.TIME}),
        ("in_segment('vip')", {G.SEGMENTS}),
        ("anniversary(attributes.birthday) BETWEEN today AND +7d", {G.PROFILE, G.TIME}),
        ("anniversary(first_order_at) = date '2026-05-01'", {G.ORDERS, G.PROFILE, G.TIME}),
        ("random_bucket(0, 10)", {G.PROFILE}),
        ("attributes.score > 1 AND aov.EUR > 1000", {G.PROFILE, G.ORDERS}),
        ("created_at < now", {G.PROFILE, G.TIME}),
    ],
)
def test_dependencies(text: str, groups: set[r.FactGroup]) -> None:
    assert r.dependencies(r.parse(text)) == groups


def test_segments_referenced() -> None:
    rule = r.parse("in_segment('vip') OR NOT (in_segment('churn') AND in_segment('vip'))")
    assert r.segments_referenced(rule) == {"vip", "churn"}
    assert r.segments_referenced(r.parse("archived")) == frozenset()


def test_cycles_are_found_and_named() -> None:
    assert r.find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert r.find_cycle({"a": ["b", "unknown"], "b": []}) is None
    assert r.find_cycle({"a": ["a"]}) == ["a", "a"]
    assert r.find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert r.find_cycle({"x": ["a"], "a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    r.check_no_cycles({"vip": ["big"], "big": []})
    with pytest.raises(r.RuleError) as caught:
        r.check_no_cycles({"vip": {"big"}, "big": {"vip"}})
    assert caught.value.reason == e.SEGMENT_CYCLE
    assert "big -> vip -> big" in str(caught.value)


def test_a_long_chain_is_no_cycle_and_no_recursion() -> None:
    chain = {f"s{i}": [f"s{i + 1}"] for i in range(5000)}
    assert r.find_cycle(chain) is None
    chain["s5000"] = ["s0"]
    cycle = r.find_cycle(chain)
    assert cycle is not None and len(cycle) == 5002
