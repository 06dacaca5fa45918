"""Helpers the orders tests share (their fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

import grpc

from crm.orders.v1 import events_pb2 as epb
from shared.testing import rpc


async def expect_error(call: Any, code: grpc.StatusCode, reason: str) -> list[str]:
    return await rpc.expect_error(call, code, reason, "orders.crm")


def item(
    sku: str = "SKU-1", quantity: int = 2, unit_price: int = 1250, discount: int = 0, **kw: object
) -> epb.LineItem:
    return epb.LineItem(
        sku=sku,
        name=f"thing {sku}",
        quantity=quantity,
        unit_price=unit_price,
        discount=discount,
        **kw,  # type: ignore[arg-type]
    )
