"""Shopify webhooks -> order commands. Everything Shopify-specific lives here; a second
platform (WooCommerce) is a sibling module implementing the same Platform protocol.

Topics: orders/create, orders/paid, orders/cancelled, fulfillments/create,
fulfillments/update (delivered), refunds/create. The HMAC is X-Shopify-Hmac-Sha256, the base64
of HMAC-SHA256(secret, raw body). Ids: order id = uuid5(shop/order id); request ids name the
shop, topic and resource id, so redeliveries and overlapping topics (orders/create with
financial_status paid, then orders/paid) are applied once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

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


def _get(payload: Mapping[str, Any], key: str) -> Any:
    if key not in payload or payload[key] in (None, ""):
        raise Invalid([(key, "MISSING_FIELD", f"the payload has no {key}")])
    return payload[key]


def sku_of(line: Mapping[str, Any]) -> str:
    """A line's SKU, or a stable stand-in for lines without one (custom items)."""
    return str(line.get("sku") or f"shopify-line-{line.get('id')}")


class Shopify:
    name = "shopify"

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        given = headers.get("X-Shopify-Hmac-Sha256", "")
        if not self.secret or not given:
            return False
        mac = base64.b64encode(hmac.new(self.secret, body, hashlib.sha256).digest()).decode()
        return hmac.compare_digest(mac, given)

    def sign(self, body: bytes) -> str:
        """What Shopify sends for ``body`` (for tests and the bench)."""
        return base64.b64encode(hmac.new(self.secret, body, hashlib.sha256).digest()).decode()

    @staticmethod
    def order_id(shop: str, shopify_id: Any) -> str:
        return str(uuid.uuid5(NS, f"{shop}/{shopify_id}"))

    def map(self, headers: Mapping[str, str], payload: Mapping[str, Any]) -> list[Command]:
        topic = headers.get("X-Shopify-Topic", "")
        shop = headers.get("X-Shopify-Shop-Domain", "")
        if not shop:
            raise Invalid([("X-Shopify-Shop-Domain", "MISSING_HEADER", "required")])
        rid = f"shopify:{shop}:"
        if topic == "orders/create":
            return self._placed(shop, payload)
        if topic == "orders/paid":
            oid = _get(payload, "id")
            return [Pay(self.order_id(shop, oid), f"{rid}order:{oid}:paid", f"shopify:{oid}")]
        if topic == "orders/cancelled":
            oid = _get(payload, "id")
            return [
                Cancel(
                    self.order_id(shop, oid),
                    f"{rid}order:{oid}:cancelled",
                    str(payload.get("cancel_reason") or ""),
                )
            ]
        if topic in ("fulfillments/create", "fulfillments/update"):
            fid, oid = _get(payload, "id"), _get(payload, "order_id")
            order_id = self.order_id(shop, oid)
            out: list[Command] = [
                Ship(
                    order_id,
                    f"{rid}fulfillment:{fid}",
                    f"shopify:{fid}",
                    str(payload.get("tracking_company") or "unspecified"),
                    str(payload.get("tracking_number") or ""),
                    str(payload.get("tracking_url") or ""),
                )
            ]
            if payload.get("shipment_status") == "delivered":
                out.append(Deliver(order_id, f"{rid}fulfillment:{fid}:delivered"))
            return out if topic == "fulfillments/create" or len(out) > 1 else []
        if topic == "refunds/create":
            return [self._refund(shop, payload)]
        raise UnknownTopic(topic)

    def _placed(self, shop: str, p: Mapping[str, Any]) -> list[Command]:
        oid = _get(p, "id")
        currency = money.currency(str(_get(p, "currency")))
        customer = p.get("customer") or {}
        if email := customer.get("email") or p.get("email"):
            who = ("email", str(email))
        elif phone := customer.get("phone") or p.get("phone"):
            who = ("phone", str(phone))
        elif customer.get("id"):
            who = ("external_id", f"shopify:{customer['id']}")
        else:
            raise Invalid([("customer", "CUSTOMER_REQUIRED", "the order names no customer")])
        items = []
        for n, line in enumerate(p.get("line_items") or []):
            field = f"line_items[{n}]"
            line_currency = (((line.get("price_set") or {}).get("shop_money")) or {}).get(
                "currency_code", ""
            )
            items.append(
                {
                    "sku": sku_of(line),
                    "name": str(line.get("title") or line.get("name") or ""),
                    "quantity": line.get("quantity"),
                    "currency": line_currency,
                    "unit_price": money.parse_decimal(
                        _get(line, "price"), currency, f"{field}.price"
                    ),
                    "discount": money.parse_decimal(
                        line.get("total_discount") or "0", currency, f"{field}.total_discount"
                    ),
                }
            )
        shipping_set = ((p.get("total_shipping_price_set") or {}).get("shop_money")) or {}
        shipping = money.parse_decimal(shipping_set.get("amount") or "0", currency, "shipping")
        tax = money.parse_decimal(p.get("total_tax") or "0", currency, "total_tax")
        try:
            placed_at = datetime.fromisoformat(str(_get(p, "created_at")))
        except ValueError:
            raise Invalid([("created_at", "INVALID_TIME", "not an ISO 8601 time")]) from None
        order_id = self.order_id(shop, oid)
        place = Place(
            PlaceOrder(
                contact_id="",
                currency=currency,
                items=items,
                shipping=shipping,
                tax=tax,
                order_id=order_id,
                external_ref=f"shopify:{shop}:{oid}",
                placed_at=placed_at,
                source="shopify",
            ),
            who,
            f"shopify:{shop}:order:{oid}:create",
        )
        out: list[Command] = [place]
        if p.get("financial_status") == "paid":
            out.append(Pay(order_id, f"shopify:{shop}:order:{oid}:paid", f"shopify:{oid}"))
        return out

    def _refund(self, shop: str, p: Mapping[str, Any]) -> Refund:
        rid, oid = _get(p, "id"), _get(p, "order_id")
        currency = ""
        amount = 0
        for n, t in enumerate(p.get("transactions") or []):
            if t.get("kind") == "refund" and t.get("status") == "success":
                currency = money.currency(str(_get(t, "currency")), f"transactions[{n}].currency")
                amount += money.parse_decimal(
                    _get(t, "amount"), currency, f"transactions[{n}].amount"
                )
        lines = [
            {
                "sku": sku_of({**(r.get("line_item") or {}), "id": r.get("line_item_id")}),
                "quantity": r.get("quantity"),
            }
            for r in p.get("refund_line_items") or []
        ]
        return Refund(
            self.order_id(shop, oid),
            f"shopify:{shop}:refund:{rid}",
            f"shopify:{rid}",
            amount,
            lines,
            str(p.get("note") or ""),
        )
