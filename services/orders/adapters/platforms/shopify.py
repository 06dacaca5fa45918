"""Shopify webhooks -> order commands. Everything Shopify-specific lives here (payload shapes in
shopify_payloads.py); a second platform (WooCommerce) is a sibling module implementing the same
Platform protocol.

Topics: orders/create, orders/paid, orders/cancelled, fulfillments/create,
fulfillments/update (delivered), refunds/create. The HMAC is X-Shopify-Hmac-Sha256, the base64
of HMAC-SHA256(secret, raw body). It covers the body only, so the headers are bound separately:
the shop domain must be one this deployment serves, and the body must be what its topic says
(a cancellation carries ``cancelled_at``, a fulfilment an ``order_id``, ...), so a signed body
re-sent under another topic or shop changes nothing. Ids: order id = uuid5(shop/order id);
request ids name the shop, topic and resource id, so redeliveries and overlapping topics
(orders/create with financial_status paid, then orders/paid) are applied once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from services.orders.adapters.platforms import shopify_payloads as shapes
from services.orders.adapters.platforms.shopify_payloads import parse
from services.orders.application.commands import PlaceOrder
from services.orders.application.ingest import (
    Cancel,
    Command,
    Deliver,
    Pay,
    Place,
    Refund,
    Ship,
    UnknownTopic,
)
from services.orders.domain import money
from shared.domain.errors import Invalid

NS = uuid.UUID("5a0d9f7e-6c2b-4e1f-9d3a-7b8c1e2f4a60")
# financial_status values that mean the order was paid in full (perhaps refunded since)
PAID_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})
FULFILLMENT_TOPICS = ("fulfillments/create", "fulfillments/update")


def shop_of(headers: Mapping[str, str]) -> str:
    return headers.get("X-Shopify-Shop-Domain", "").strip().lower()


def sku_of(line_id: int | None, sku: str | None) -> str:
    """A line's SKU, or a stable stand-in for lines without one (custom items)."""
    return sku or f"shopify-line-{line_id}"


def _mismatch(field: str, topic: str, expected: str) -> Invalid:
    return Invalid([(field, "PAYLOAD_TOPIC_MISMATCH", f"a {topic} delivery must {expected}")])


class Shopify:
    name = "shopify"

    def __init__(self, secret: str, shops: Iterable[str] = ()) -> None:
        self.secret = secret.encode()
        self.shops = frozenset(s.strip().lower() for s in shops if s.strip())

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        given = headers.get("X-Shopify-Hmac-Sha256", "")
        if not self.secret or not given:
            return False
        return hmac.compare_digest(self.sign(body), given)

    def sign(self, body: bytes) -> str:
        """What Shopify sends for ``body`` (for tests and the bench)."""
        return base64.b64encode(hmac.new(self.secret, body, hashlib.sha256).digest()).decode()

    def serves(self, headers: Mapping[str, str]) -> bool:
        return shop_of(headers) in self.shops

    @staticmethod
    def order_id(shop: str, shopify_id: Any) -> str:
        return str(uuid.uuid5(NS, f"{shop}/{shopify_id}"))

    def map(self, headers: Mapping[str, str], payload: Any) -> list[Command]:
        topic, shop, now = headers.get("X-Shopify-Topic", ""), shop_of(headers), datetime.now(UTC)
        if topic == "orders/create":
            return self._placed(shop, self._order(payload, now), now)
        if topic == "orders/paid":
            order = self._order(payload, now)
            if order.financial_status not in PAID_STATUSES:
                raise _mismatch(
                    "financial_status", topic, f"say {' or '.join(sorted(PAID_STATUSES))}"
                )
            return [self._pay(shop, order.id)]
        if topic == "orders/cancelled":
            order = self._order(payload, now)
            if order.cancelled_at is None:
                raise _mismatch("cancelled_at", topic, "carry cancelled_at")
            shapes.timestamp(order.cancelled_at, "cancelled_at", now)
            rid = f"shopify:{shop}:order:{order.id}:cancelled"
            return [Cancel(self.order_id(shop, order.id), rid, order.cancel_reason or "")]
        if topic in FULFILLMENT_TOPICS:
            return self._shipped(shop, parse(shapes.FulfillmentPayload, payload))
        if topic == "refunds/create":
            return [self._refund(shop, parse(shapes.RefundPayload, payload))]
        raise UnknownTopic(topic)

    @staticmethod
    def _order(payload: Any, now: datetime) -> shapes.OrderPayload:
        order = parse(shapes.OrderPayload, payload)
        shapes.timestamp(order.created_at, "created_at", now)
        return order

    def _pay(self, shop: str, oid: int) -> Pay:
        return Pay(self.order_id(shop, oid), f"shopify:{shop}:order:{oid}:paid", f"shopify:{oid}")

    def _placed(self, shop: str, p: shapes.OrderPayload, now: datetime) -> list[Command]:
        currency = money.currency(p.currency)
        customer = p.customer or shapes.Customer()
        if email := customer.email or p.email:
            who = ("email", email)
        elif phone := customer.phone or p.phone:
            who = ("phone", phone)
        elif customer.id:
            who = ("external_id", f"shopify:{customer.id}")
        else:
            raise Invalid([("customer", "CUSTOMER_REQUIRED", "the order names no customer")])
        items = []
        for n, line in enumerate(p.line_items):
            field = f"line_items[{n}]"
            shop_money = line.price_set.shop_money if line.price_set else None
            items.append(
                {
                    "sku": sku_of(line.id, line.sku),
                    "name": line.title or line.name or "",
                    "quantity": line.quantity,
                    "currency": (shop_money.currency_code if shop_money else None) or "",
                    "unit_price": shapes.minor_units(line.price, currency, f"{field}.price"),
                    "discount": shapes.minor_units(
                        line.total_discount or "0", currency, f"{field}.total_discount"
                    ),
                }
            )
        shipping_set = p.total_shipping_price_set
        shipping_text = (shipping_set.shop_money if shipping_set else None) or shapes.ShopMoney()
        order_id = self.order_id(shop, p.id)
        place = Place(
            PlaceOrder(
                contact_id="",
                currency=currency,
                items=items,
                shipping=shapes.minor_units(shipping_text.amount or "0", currency, "shipping"),
                tax=shapes.minor_units(p.total_tax or "0", currency, "total_tax"),
                order_id=order_id,
                external_ref=f"shopify:{shop}:{p.id}",
                placed_at=shapes.timestamp(p.created_at, "created_at", now),
                source="shopify",
            ),
            who,
            f"shopify:{shop}:order:{p.id}:create",
        )
        if p.financial_status in PAID_STATUSES:
            return [place, self._pay(shop, p.id)]
        return [place]

    def _shipped(self, shop: str, f: shapes.FulfillmentPayload) -> list[Command]:
        """A fulfilment is a shipment (recorded once by its id, so fulfillments/update also
        records one whose create was missed), and delivered when Shopify says so."""
        order_id, rid = self.order_id(shop, f.order_id), f"shopify:{shop}:fulfillment:{f.id}"
        ship = Ship(
            order_id,
            rid,
            f"shopify:{f.id}",
            f.tracking_company or "unspecified",
            f.tracking_number or "",
            f.tracking_url or "",
        )
        if f.shipment_status == "delivered":
            return [ship, Deliver(order_id, f"{rid}:delivered")]
        return [ship]

    def _refund(self, shop: str, p: shapes.RefundPayload) -> Refund:
        amount = 0
        for n, t in enumerate(p.transactions):
            if t.kind == "refund" and t.status == "success":
                field = f"transactions[{n}]"
                currency = money.currency(t.currency, f"{field}.currency")
                amount += shapes.minor_units(t.amount, currency, f"{field}.amount")
        lines = [
            {
                "sku": sku_of(r.line_item_id, r.line_item.sku if r.line_item else None),
                "quantity": r.quantity,
            }
            for r in p.refund_line_items
        ]
        return Refund(
            self.order_id(shop, p.order_id),
            f"shopify:{shop}:refund:{p.id}",
            f"shopify:{p.id}",
            money.amount(amount, "transactions"),
            lines,
            p.note or "",
        )
