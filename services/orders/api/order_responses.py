"""Domain values -> OrdersService messages: carts, orders and a customer's metrics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as pb
from services.orders.application.queries import CurrencyMetrics
from services.orders.domain.cart import Cart
from services.orders.domain.order import Order
from shared.grpckit import calls


def _items_pb(items: Any) -> list[epb.LineItem]:
    return [
        epb.LineItem(
            sku=i["sku"],
            name=i["name"],
            quantity=i["quantity"],
            unit_price=i["unit_price"],
            discount=i["discount"],
        )
        for i in items
    ]


def cart_pb(c: Cart) -> pb.Cart:
    return pb.Cart(
        cart_id=c.cart_id,
        contact_id=c.contact_id,
        currency=c.currency,
        items=_items_pb(c.items),
        subtotal=c.subtotal,
        state=pb.CartState.Value(f"CART_STATE_{c.state}"),
        order_id=c.order_id,
        create_time=calls.timestamp(c.created_at),
        last_activity_time=calls.timestamp(c.last_activity_at),
        etag=str(c.version),
    )


def order_pb(o: Order) -> pb.Order:
    return pb.Order(
        order_id=o.order_id,
        contact_id=o.contact_id,
        currency=o.currency,
        items=_items_pb(o.items),
        subtotal=o.subtotal,
        shipping=o.shipping,
        tax=o.tax,
        total=o.total,
        paid=o.paid,
        refunded=o.refunded,
        state=pb.OrderState.Value(f"ORDER_STATE_{o.state}"),
        shipments=[
            pb.Shipment(
                shipment_id=s["shipment_id"],
                carrier=s["carrier"],
                tracking_number=s["tracking_number"],
                tracking_url=s["tracking_url"],
                ship_time=calls.timestamp(s["at"]),
            )
            for s in o.shipments
        ],
        external_ref=o.external_ref,
        cart_id=o.cart_id,
        place_time=calls.timestamp(o.placed_at),
        update_time=calls.timestamp(o.updated_at),
        etag=str(o.version),
    )


def customer_metrics_pb(
    contact_id: str, rows: Sequence[CurrencyMetrics]
) -> pb.GetCustomerMetricsResponse:
    out = pb.GetCustomerMetricsResponse(contact_id=contact_id)
    if not rows:
        return out  # a contact without (counted) orders: zeros, not NOT_FOUND
    first = min(r.first_order_at for r in rows)
    last = max(r.last_order_at for r in rows)
    out.order_count = sum(r.order_count for r in rows)
    out.first_order_time.CopyFrom(calls.timestamp(first))
    out.last_order_time.CopyFrom(calls.timestamp(last))
    out.days_since_last_order = (datetime.now(UTC) - last).days
    for r in rows:
        out.currencies.append(
            pb.CurrencyMetrics(
                currency=r.currency,
                order_count=r.order_count,
                revenue=r.revenue,
                refunded=r.refunded,
                average_order_value=r.average_order_value,
                first_order_time=calls.timestamp(r.first_order_at),
                last_order_time=calls.timestamp(r.last_order_at),
                rfm=pb.Rfm(
                    recency=r.recency, frequency=r.frequency, monetary=r.monetary, group=r.group
                ),
            )
        )
    return out
