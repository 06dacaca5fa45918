"""Orders (metrics, carts, orders) over its gRPC API, called with notifications' service token:
what templates read as `metrics`, `cart` and `order`. Its refusals become ours
(shared/grpckit/upstream.py); anything else is UNAVAILABLE."""

from __future__ import annotations

from typing import Any

import grpc

from crm.orders.v1 import events_pb2 as oepb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from services.notifications.adapters.contacts_client import TIMEOUT
from services.notifications.adapters.contacts_client import time_text as _time
from shared.grpckit.client import ClientTls, bearer, open_channel
from shared.grpckit.upstream import Upstream

ORDERS = Upstream("orders", "notifications.crm")


class GrpcOrders:
    def __init__(self, target: str, token: str, tls: ClientTls | None = None) -> None:
        self.channel = open_channel(target, tls)
        self.stub = opb_grpc.OrdersServiceStub(self.channel)
        self.auth = bearer(token)

    async def close(self) -> None:
        await self.channel.close()

    async def metrics(self, contact_id: str) -> dict[str, Any]:
        try:
            m = await self.stub.GetCustomerMetrics(
                opb.GetCustomerMetricsRequest(contact_id=contact_id),
                timeout=TIMEOUT,
                metadata=self.auth,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return {"order_count": 0, "currencies": []}
            raise ORDERS.error(err, "contact_id", "read the customer's metrics") from None
        return {
            "order_count": m.order_count,
            "first_order_time": _time(m.first_order_time),
            "last_order_time": _time(m.last_order_time),
            "days_since_last_order": m.days_since_last_order,
            "currencies": [
                {
                    "currency": c.currency,
                    "order_count": c.order_count,
                    "revenue": c.revenue,
                    "refunded": c.refunded,
                    "average_order_value": c.average_order_value,
                    "rfm_group": c.rfm.group,
                }
                for c in m.currencies
            ],
        }

    async def cart(self, cart_id: str) -> dict[str, Any] | None:
        try:
            got = await self.stub.GetCart(
                opb.GetCartRequest(cart_id=cart_id), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise ORDERS.error(err, "cart_id", "read the cart") from None
        c = got.cart
        return {
            "cart_id": c.cart_id,
            "contact_id": c.contact_id,
            "currency": c.currency,
            "items": [_item(i) for i in c.items],
            "item_count": sum(i.quantity for i in c.items),
            "subtotal": c.subtotal,
            "state": opb.CartState.Name(c.state).removeprefix("CART_STATE_").lower(),
        }

    async def order(self, order_id: str) -> dict[str, Any] | None:
        try:
            got = await self.stub.GetOrder(
                opb.GetOrderRequest(order_id=order_id), timeout=TIMEOUT, metadata=self.auth
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise ORDERS.error(err, "order_id", "read the order") from None
        o = got.order
        return {
            "order_id": o.order_id,
            "contact_id": o.contact_id,
            "number": o.external_ref,
            "currency": o.currency,
            "items": [_item(i) for i in o.items],
            "subtotal": o.subtotal,
            "shipping": o.shipping,
            "tax": o.tax,
            "total": o.total,
            "paid": o.paid,
            "refunded": o.refunded,
            "state": opb.OrderState.Name(o.state).removeprefix("ORDER_STATE_").lower(),
            "shipments": [
                {
                    "carrier": sh.carrier,
                    "tracking_number": sh.tracking_number,
                    "tracking_url": sh.tracking_url,
                    "ship_time": _time(sh.ship_time),
                }
                for sh in o.shipments
            ],
            "place_time": _time(o.place_time),
        }


def _item(i: oepb.LineItem) -> dict[str, Any]:
    """A line as templates read it: amounts in minor units (format with ``| money(currency)``)."""
    return {
        "sku": i.sku,
        "name": i.name,
        "quantity": i.quantity,
        "unit_price": i.unit_price,
        "discount": i.discount,
        "total": i.quantity * i.unit_price - i.discount,
    }
