"""The cart aggregate: state, evolve (fold one event) and decide (command -> events).

A cart is abandoned when it has items, no order, and no activity for the configured time. That
happens at most once in a cart's life: later activity reopens the cart for editing, but a second
idle spell does not abandon it again. The decision is taken from the stream (never from a read
model), and appended with the stream version it was taken at, so racing timers cannot both win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from services.orders.domain import money
from shared.domain.errors import Invalid, NotFound, Precondition, quote
from shared.domain.timestamps import timestamp_text

PREFIX = "crm.orders.v1."
CREATED = PREFIX + "CartCreated"
ITEM_ADDED = PREFIX + "CartItemAdded"
ITEM_CHANGED = PREFIX + "CartItemChanged"
ITEM_REMOVED = PREFIX + "CartItemRemoved"
CHECKOUT_STARTED = PREFIX + "CheckoutStarted"
CONVERTED = PREFIX + "CartConverted"
ABANDONED = PREFIX + "CartAbandoned"
RECOVERED = PREFIX + "CartRecovered"
ACTIVITY = {CREATED, ITEM_ADDED, ITEM_CHANGED, ITEM_REMOVED, CHECKOUT_STARTED}

OPEN, CHECKOUT, ABANDONED_STATE, CONVERTED_STATE = "OPEN", "CHECKOUT", "ABANDONED", "CONVERTED"

Event = tuple[str, dict[str, Any]]


def stream_of(cart_id: str) -> str:
    return f"cart-{cart_id}"


@dataclass(frozen=True, slots=True)
class Cart:
    cart_id: str
    contact_id: str
    currency: str
    items: tuple[dict[str, Any], ...] = ()
    state: str = OPEN
    order_id: str = ""
    recovered: bool = False
    created_at: datetime | None = None
    last_activity_at: datetime | None = None
    version: int = -1
    abandoned_at: datetime | None = None

    @property
    def subtotal(self) -> int:
        return money.subtotal(self.items)

    def item(self, sku: str) -> dict[str, Any] | None:
        return next((i for i in self.items if i["sku"] == sku), None)


def evolve(
    state: Cart | None, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> Cart:
    if type_ == CREATED:
        return Cart(
            data["cart_id"],
            data["contact_id"],
            data["currency"],
            created_at=at,
            last_activity_at=at,
            version=version,
        )
    assert state is not None, f"{type_} before CartCreated"
    s = replace(state, version=version)
    if type_ in ACTIVITY:
        s = replace(s, last_activity_at=at)
        if s.state == ABANDONED_STATE:  # activity after abandonment reopens the cart
            s = replace(s, state=OPEN)
    if type_ in (ITEM_ADDED, ITEM_CHANGED):
        new = dict(data["item"])
        old = s.item(new["sku"])
        if type_ == ITEM_ADDED and old is not None:
            new = {
                **old,
                "quantity": old["quantity"] + new["quantity"],
                "discount": old["discount"] + new["discount"],
            }
        kept = tuple(i for i in s.items if i["sku"] != new["sku"])
        position = [i["sku"] for i in s.items].index(new["sku"]) if old else len(kept)
        s = replace(s, items=(*kept[:position], new, *kept[position:]))
    elif type_ == ITEM_REMOVED:
        s = replace(s, items=tuple(i for i in s.items if i["sku"] != data["sku"]))
    elif type_ == CHECKOUT_STARTED:
        s = replace(s, state=CHECKOUT)
    elif type_ == CONVERTED:
        s = replace(s, state=CONVERTED_STATE, order_id=data["order_id"])
    elif type_ == ABANDONED:
        s = replace(s, state=ABANDONED_STATE, abandoned_at=at)
    elif type_ == RECOVERED:
        s = replace(s, recovered=True)
    return s


def fold(events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Cart | None:
    state: Cart | None = None
    for t, d, at, v in events:
        state = evolve(state, t, d, at, v)
    return state


def _editable(cart: Cart | None, cart_id: str) -> Cart:
    if cart is None:
        raise NotFound("CART_NOT_FOUND", f"no cart {cart_id}")
    if cart.state == CONVERTED_STATE:
        raise Precondition(
            "CART_CONVERTED", f"cart is CONVERTED (order {cart.order_id})", state=cart.state
        )
    return cart


def decide_create(cart_id: str, contact_id: str, currency: str, at: datetime) -> list[Event]:
    code = money.currency(currency)
    return [
        (
            CREATED,
            {
                "cart_id": cart_id,
                "contact_id": contact_id,
                "currency": code,
                "create_time": timestamp_text(at),
            },
        )
    ]


def decide_add(cart: Cart | None, cart_id: str, raw: Mapping[str, Any]) -> list[Event]:
    c = _editable(cart, cart_id)
    item = money.line_item(raw, "item", c.currency)
    old = c.item(item["sku"])
    if old is not None and old["unit_price"] != item["unit_price"]:
        raise Invalid(
            [
                (
                    "item.unit_price",
                    "PRICE_MISMATCH",
                    f"the cart has {quote(item['sku'])} at {old['unit_price']}; use ChangeCartItem",
                )
            ]
        )
    if old is None and len(c.items) >= money.MAX_LINES:
        raise Invalid([("item", "TOO_MANY_LINES", f"at most {money.MAX_LINES} lines")])
    if old is not None and old["quantity"] + item["quantity"] > money.MAX_QUANTITY:
        raise Invalid([("item.quantity", "INVALID_QUANTITY", f"at most {money.MAX_QUANTITY}")])
    _within_bounds(c, item, adding=True)
    return [(ITEM_ADDED, {"cart_id": c.cart_id, "item": item})]


def _within_bounds(c: Cart, item: Mapping[str, Any], *, adding: bool) -> None:
    """The cart's line and subtotal after this add or change stay within MAX_AMOUNT."""
    old = c.item(item["sku"])
    line = dict(item)
    if adding and old is not None:
        line["quantity"] = old["quantity"] + item["quantity"]
        line["discount"] = old["discount"] + item["discount"]
    money.bounded(money.line_total(line), "item", "line total")
    others = money.subtotal(i for i in c.items if i["sku"] != item["sku"])
    money.bounded(others + money.line_total(line), "item", "cart's subtotal")


def decide_change(cart: Cart | None, cart_id: str, raw: Mapping[str, Any]) -> list[Event]:
    c = _editable(cart, cart_id)
    item = money.line_item(raw, "item", c.currency)
    old = c.item(item["sku"])
    if old is None:
        raise NotFound(
            "CART_ITEM_NOT_FOUND", f"the cart has no line {quote(item['sku'])}", sku=item["sku"]
        )
    _within_bounds(c, item, adding=False)
    if {**old, "name": item["name"] or old["name"]} == {
        **item,
        "name": item["name"] or old["name"],
    }:
        return []
    return [
        (
            ITEM_CHANGED,
            {"cart_id": c.cart_id, "item": {**item, "name": item["name"] or old["name"]}},
        )
    ]


def decide_remove(cart: Cart | None, cart_id: str, sku: str) -> list[Event]:
    c = _editable(cart, cart_id)
    if c.item(sku) is None:
        raise NotFound("CART_ITEM_NOT_FOUND", f"the cart has no line {quote(sku)}", sku=sku)
    return [(ITEM_REMOVED, {"cart_id": c.cart_id, "sku": sku})]


def decide_checkout(cart: Cart | None, cart_id: str) -> list[Event]:
    c = _editable(cart, cart_id)
    if not c.items:
        raise Precondition("CART_EMPTY", "the cart is empty", state=c.state)
    return [
        (
            CHECKOUT_STARTED,
            {
                "cart_id": c.cart_id,
                "contact_id": c.contact_id,
                "currency": c.currency,
                "subtotal": c.subtotal,
            },
        )
    ]


def decide_convert(cart: Cart | None, cart_id: str, order_id: str) -> list[Event]:
    """The cart's side of PlaceOrder from a cart: converted, and recovered if it was abandoned."""
    c = _editable(cart, cart_id)
    if not c.items:
        raise Precondition("CART_EMPTY", "the cart is empty", state=c.state)
    out: list[Event] = [(CONVERTED, {"cart_id": c.cart_id, "order_id": order_id})]
    if c.abandoned_at is not None and not c.recovered:
        out.append(_recovered(c, order_id, "converted"))
    return out


def decide_recover(cart: Cart, order_id: str) -> list[Event]:
    """The contact ordered another way after this cart was abandoned."""
    if cart.abandoned_at is None or cart.recovered or cart.state == CONVERTED_STATE:
        return []
    return [_recovered(cart, order_id, "ordered")]


def _recovered(c: Cart, order_id: str, how: str) -> Event:
    return (
        RECOVERED,
        {"cart_id": c.cart_id, "contact_id": c.contact_id, "order_id": order_id, "how": how},
    )


def decide_abandon(cart: Cart | None, now: datetime, after: timedelta) -> list[Event]:
    """CartAbandoned if the cart is idle past ``after`` with items and no order; else nothing."""
    if cart is None or cart.state not in (OPEN, CHECKOUT) or not cart.items:
        return []
    if cart.abandoned_at is not None or cart.last_activity_at is None:
        return []
    if now - cart.last_activity_at < after:
        return []
    return [
        (
            ABANDONED,
            {
                "cart_id": cart.cart_id,
                "contact_id": cart.contact_id,
                "currency": cart.currency,
                "subtotal": cart.subtotal,
                "items": list(cart.items),
                "last_activity_time": timestamp_text(cart.last_activity_at),
                "abandon_after_seconds": int(after.total_seconds()),
            },
        )
    ]
