"""Random JSON at the real webhook endpoint, for every topic: arbitrary shapes, and valid payloads
with values swapped for arbitrary ones. The answer is always 2xx or 4xx (never 5xx), and a 4xx
wrote nothing."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.orders.tests.conftest import Env
from services.orders.tests.shopify_samples import FULFILMENT, ORDER, PAID, SHOP, post

pytestmark = pytest.mark.timeout(300)

REFUND: dict[str, Any] = {
    "id": 7007,
    "order_id": ORDER["id"],
    "refund_line_items": [{"line_item_id": 866550311766439020, "quantity": 1}],
    "transactions": [{"kind": "refund", "status": "success", "amount": "1.00", "currency": "USD"}],
}
VALID: dict[str, dict[str, Any]] = {
    "orders/create": ORDER,
    "orders/paid": PAID,
    "orders/cancelled": {**ORDER, "cancelled_at": "2026-11-21T09:00:00Z"},
    "fulfillments/create": FULFILMENT,
    "fulfillments/update": {**FULFILMENT, "shipment_status": "delivered"},
    "refunds/create": REFUND,
}
NASTY = st.sampled_from(
    ["1e300000", "1e999999", "-1.00", "", "NaN", "2100-01-01T00:00:00Z", "2026-11-20", 2**63, -1]
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value that could hold another value."""
    out = [at] if at else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*at, i))
    return out


def like(value: Any) -> st.SearchStrategy[Any]:
    """Another value of the same JSON type (so that some mutated payloads stay valid)."""
    if isinstance(value, bool) or value is None:
        return st.none() | st.booleans()
    if isinstance(value, int):
        return st.integers(-5, 2**63)
    if isinstance(value, str):
        return st.text(max_size=30) | st.from_regex(r"^-?[0-9]{1,18}(\.[0-9]{0,4})?$")
    return JSON


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, Any]:
    topic = draw(st.sampled_from(sorted(VALID)))
    if draw(st.integers(0, 3)) == 0:
        return topic, draw(JSON)
    payload = copy.deepcopy(VALID[topic])
    for _ in range(draw(st.integers(1, 3))):
        *parent, key = draw(st.sampled_from(paths(payload)))
        target: Any = payload
        for k in parent:
            target = target[k]
        target[key] = draw(like(target[key]) | JSON | NASTY)
    return topic, payload


async def test_random_deliveries_never_get_5xx_and_4xx_writes_nothing(env: Env) -> None:
    env.shopify.shops = frozenset({SHOP})
    loop = asyncio.get_running_loop()

    async def one(topic: str, payload: Any) -> None:
        before = await env.event_count()
        status, body = await post(env, topic, payload)
        assert status in (200, 202, 400, 409, 422), (status, body, topic, payload)
        if status >= 400:
            assert "error" in body
            assert await env.event_count() == before, (status, body, topic, payload)

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(deliveries())
    def check(delivery: tuple[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(one(*delivery), loop).result()

    await asyncio.to_thread(check)
