"""The order aggregate. The lifecycle is a sequence of events, not a mutable status:

    PLACED --pay--> PAID --ship--> SHIPPED --deliver--> DELIVERED
      |               |  (ship again: a further shipment)
      +----cancel-----+--> CANCELLED
    refunds: from PAID, SHIPPED, DELIVERED or CANCELLED while something paid is unrefunded;
    the refund that reaches the amount paid makes the order REFUNDED.

An illegal transition raises Precondition naming the current state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.orders.domain import money
from shared.domain.errors import Invalid, Precondition, quote
from shared.domain.timestamps import timestamp_from_text, timestamp_text

PREFIX = "crm.orders.v1."
PLACED = PREFIX + "OrderPlaced"
PAID = PREFIX + "OrderPaid"
SHIPPED = PREFIX + "OrderShipped"
DELIVERED = PREFIX + "OrderDelivered"
CANCELLED = PREFIX + "OrderCancelled"
REFUNDED = PREFIX + "OrderRefunded"

STATES = ("PLACED", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED")
MAX_TEXT = 500

Event = tuple[str, dict[str, Any]]


def stream_of(order_id: str) -> str:
    return f"order-{order_id}"


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    contact_id: str
    currency: str
    items: tuple[dict[str, Any], ...]
    subtotal: int
    shipping: int
    tax: int
    total: int
    placed_at: datetime
    external_ref: str = ""
    cart_id: str = ""
    state: str = "PLACED"
    paid: int = 0
    refunded: int = 0
    shipments: tuple[dict[str, Any], ...] = ()
    refund_ids: frozenset[str] = frozenset()
    returned: tuple[tuple[str, int], ...] = ()  # (sku, quantity) refunded so far
    updated_at: datetime | None = None
    version: int = -1

    def returned_of(self, sku: str) -> int:
        return sum(q for s, q in self.returned if s == sku)


def evolve(
    state: Order | None, type_: str, d: Mapping[str, Any], at: datetime, version: int
) -> Order:
    if type_ == PLACED:
        return Order(
            d["order_id"],
            d["contact_id"],
            d["currency"],
            tuple(d["items"]),
            d["subtotal"],
            d["shipping"],
            d["tax"],
            d["total"],
            timestamp_from_text(d["place_time"]),
            d.get("external_ref", ""),
            d.get("cart_id", ""),
            updated_at=at,
            version=version,
        )
    assert state is not None, f"{type_} before OrderPlaced"
    change: dict[str, Any] = {"updated_at": at, "version": version}  # one replace() per event
    if type_ == PAID:
        change.update(state="PAID", paid=d["amount"])
    elif type_ == SHIPPED:
        shipment = {
            k: d.get(k, "") for k in ("shipment_id", "carrier", "tracking_number", "tracking_url")
        }
        change.update(state="SHIPPED", shipments=(*state.shipments, {**shipment, "at": at}))
    elif type_ in (DELIVERED, CANCELLED):
        change["state"] = "DELIVERED" if type_ == DELIVERED else "CANCELLED"
    elif type_ == REFUNDED:
        lines = tuple((ln["sku"], int(ln["quantity"])) for ln in d.get("lines", ()))
        change.update(
            refunded=d["refunded_total"],
            refund_ids=state.refund_ids | {d["refund_id"]},
            returned=state.returned + lines,
            state="REFUNDED" if d.get("full") else state.state,
        )
    return replace(state, **change)


def fold(events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Order | None:
    state: Order | None = None
    for t, d, at, v in events:
        state = evolve(state, t, d, at, v)
    return state


def _text(value: str, field: str) -> str:
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise Invalid([(field, "TEXT_TOO_LONG", f"at most {MAX_TEXT} characters")])
    return value


def _require(order: Order, allowed: Sequence[str], action: str) -> None:
    if order.state not in allowed:
        raise Precondition(
            f"ORDER_{order.state}",
            f"cannot {action} an order in state {order.state} (allowed in {', '.join(allowed)})",
            state=order.state,
            order_id=order.order_id,
        )


def decide_place(
    order_id: str,
    contact_id: str,
    currency: str,
    raw_items: Sequence[Mapping[str, Any]],
    *,
    shipping: int = 0,
    tax: int = 0,
    placed_at: datetime,
    external_ref: str = "",
    cart_id: str = "",
    source: str = "api",
) -> list[Event]:
    code = money.currency(currency)
    items = money.line_items(raw_items, code)
    skus = [i["sku"] for i in items]
    dupes = sorted({s for s in skus if skus.count(s) > 1})
    if dupes:
        named = ", ".join(quote(s) for s in dupes[:3]) + (", …" if len(dupes) > 3 else "")
        raise Invalid([("items", "DUPLICATE_SKU", f"each SKU once per order: {named}")])
    shipping, tax = money.amount(shipping, "shipping"), money.amount(tax, "tax")
    sub = money.subtotal(items)
    total = money.bounded(sub + shipping + tax, "total", "order's total")
    return [
        (
            PLACED,
            {
                "order_id": order_id,
                "contact_id": contact_id,
                "currency": code,
                "items": items,
                "subtotal": sub,
                "shipping": shipping,
                "tax": tax,
                "total": total,
                "place_time": timestamp_text(placed_at),
                "external_ref": _text(external_ref, "external_ref"),
                "cart_id": cart_id,
                "source": source,
            },
        )
    ]


def _base(o: Order) -> dict[str, Any]:
    return {"order_id": o.order_id, "contact_id": o.contact_id}


def decide_pay(o: Order, amount: int, payment_ref: str) -> list[Event]:
    money.amount(amount, "amount")
    _require(o, ("PLACED",), "pay")
    if amount and amount != o.total:
        raise Invalid(
            [
                (
                    "amount",
                    "PAYMENT_AMOUNT_MISMATCH",
                    f"must equal the order's total {o.total} (or be left 0)",
                )
            ]
        )
    return [
        (
            PAID,
            {
                **_base(o),
                "currency": o.currency,
                "amount": o.total,
                "payment_ref": _text(payment_ref, "payment_ref"),
            },
        )
    ]


def decide_ship(
    o: Order, shipment_id: str, carrier: str, tracking_number: str, tracking_url: str
) -> list[Event]:
    if shipment_id and any(s["shipment_id"] == shipment_id for s in o.shipments):
        return []  # this shipment is already recorded
    carrier = _text(carrier, "carrier")
    if not carrier:
        raise Invalid([("carrier", "CARRIER_REQUIRED", "name the carrier")])
    _require(o, ("PAID", "SHIPPED"), "ship")
    return [
        (
            SHIPPED,
            {
                **_base(o),
                "shipment_id": shipment_id or f"{o.order_id}/{len(o.shipments) + 1}",
                "carrier": carrier,
                "tracking_number": _text(tracking_number, "tracking_number"),
                "tracking_url": _text(tracking_url, "tracking_url"),
            },
        )
    ]


def decide_deliver(o: Order) -> list[Event]:
    _require(o, ("SHIPPED",), "deliver")
    return [(DELIVERED, _base(o))]


def decide_cancel(o: Order, reason: str) -> list[Event]:
    reason = _text(reason, "reason")
    _require(o, ("PLACED", "PAID"), "cancel")
    return [(CANCELLED, {**_base(o), "currency": o.currency, "reason": reason, "total": o.total})]


def decide_refund(
    o: Order, amount: int, raw_lines: Sequence[Mapping[str, Any]], reason: str, refund_id: str
) -> list[Event]:
    if refund_id and refund_id in o.refund_ids:
        return []  # this refund is already recorded
    money.amount(amount, "amount")
    reason = _text(reason, "reason")
    lines, default = _refund_lines(o, raw_lines)
    amount = amount or default
    if amount <= 0:
        raise Invalid(
            [("amount", "REFUND_AMOUNT_REQUIRED", "give an amount or the returned lines")]
        )
    if o.paid == 0:
        raise Precondition(
            "NOTHING_PAID",
            f"nothing was paid on this order (state {o.state})",
            state=o.state,
            order_id=o.order_id,
        )
    _require(o, ("PAID", "SHIPPED", "DELIVERED", "CANCELLED"), "refund")
    if o.refunded + amount > o.paid:
        raise Precondition(
            "REFUND_EXCEEDS_PAID",
            f"refunding {amount} would exceed the amount paid: {o.paid - o.refunded} is refundable",
            state=o.state,
            refundable=str(o.paid - o.refunded),
        )
    total = o.refunded + amount
    return [
        (
            REFUNDED,
            {
                **_base(o),
                "currency": o.currency,
                "refund_id": refund_id or f"{o.order_id}/r{len(o.refund_ids) + 1}",
                "amount": amount,
                "refunded_total": total,
                "lines": lines,
                "reason": reason,
                "full": total == o.paid,
            },
        )
    ]


def _refund_lines(o: Order, raw: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Validated returned lines and their value (each line's total, pro rata per unit)."""
    lines: list[dict[str, Any]] = []
    value = 0
    problems: list[tuple[str, str, str]] = []
    by_sku = {i["sku"]: i for i in o.items}
    for n, ln in enumerate(raw):
        sku, q = str(ln.get("sku", "")), ln.get("quantity", 0)
        item = by_sku.get(sku)
        if item is None:
            problems.append(
                (f"lines[{n}].sku", "UNKNOWN_SKU", f"the order has no line {quote(sku)}")
            )
            continue
        left = (
            item["quantity"]
            - o.returned_of(sku)
            - sum(x["quantity"] for x in lines if x["sku"] == sku)
        )
        if isinstance(q, bool) or not isinstance(q, int) or not 0 < q <= left:
            problems.append(
                (f"lines[{n}].quantity", "INVALID_QUANTITY", f"must be 1..{left} for {quote(sku)}")
            )
            continue
        lines.append({"sku": sku, "quantity": q})
        value += money.line_total(item) * q // item["quantity"]
    if problems:
        raise Invalid(problems)
    return lines, value
