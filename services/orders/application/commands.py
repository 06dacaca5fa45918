"""Command handlers for carts and orders: decide functions run by the shared command runner
(load the stream, decide, append at the version read, answer a retry with its first result)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import crm.orders.v1.events_pb2  # noqa: F401  (the descriptors the upcaster reads)
from services.orders.application.aggregates import CART, NS, ORDER
from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from services.orders.domain.cart import Cart
from services.orders.domain.order import Order
from shared.application.commands import CommandRunner, Event, new_id
from shared.domain.errors import Invalid
from shared.eventstore import EventStore, StreamAppend

__all__ = ["CART", "ORDER", "CartCommands", "OrderCommands", "PlaceOrder"]


class CartCommands:
    def __init__(self, store: EventStore) -> None:
        self.runner = CommandRunner(store)

    async def create(
        self, contact_id: str, currency: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Cart:
        cart_id = new_id(NS, "cart", request_id)
        decided = carts.decide_create(cart_id, contact_id, currency, datetime.now(UTC))

        async def plan(_attempt: int) -> tuple[list[Event], list[StreamAppend]]:
            return decided, []

        return await self.runner.create(CART, cart_id, plan, request_id=request_id, meta=meta)

    async def add(self, cart_id: str, item: Mapping[str, Any], **kw: Any) -> Cart:
        return await self.runner.execute(
            CART, cart_id, lambda c: carts.decide_add(c, cart_id, item), **kw
        )

    async def change(self, cart_id: str, item: Mapping[str, Any], **kw: Any) -> Cart:
        return await self.runner.execute(
            CART, cart_id, lambda c: carts.decide_change(c, cart_id, item), **kw
        )

    async def remove(self, cart_id: str, sku: str, **kw: Any) -> Cart:
        return await self.runner.execute(
            CART, cart_id, lambda c: carts.decide_remove(c, cart_id, sku), **kw
        )

    async def checkout(self, cart_id: str, **kw: Any) -> Cart:
        return await self.runner.execute(
            CART, cart_id, lambda c: carts.decide_checkout(c, cart_id), **kw
        )

    async def abandon(self, cart_id: str, now: datetime, after: timedelta) -> bool:
        """Append CartAbandoned if the cart's own stream says it is due; at most once, however
        many timers race (replicas, a restart mid-way). True if this call wrote it. A cart that
        moved under us is left to the next poll."""
        wrote = await self.runner.append_once(
            CART,
            cart_id,
            lambda c: carts.decide_abandon(c, now, after),
            f"abandon\n{cart_id}",
            {"schema": 1, "actor": "timer"},
            attempts=1,
        )
        return bool(wrote)


@dataclass(frozen=True)
class PlaceOrder:
    contact_id: str
    currency: str
    items: Sequence[Mapping[str, Any]]
    shipping: int = 0
    tax: int = 0
    order_id: str = ""
    cart_id: str = ""
    external_ref: str = ""
    placed_at: datetime | None = None
    source: str = "api"


class OrderCommands:
    def __init__(self, store: EventStore) -> None:
        self.runner = CommandRunner(store)

    def order_id_for(self, given: str, request_id: str) -> str:
        return given or new_id(NS, "order", request_id)

    async def place(
        self,
        cmd: PlaceOrder,
        *,
        customer: Callable[[], Awaitable[str]] | None = None,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Order:
        """Optimistic: append first (the order stream must not exist); only a failure reads the
        order stream, to answer a retry with its first result or to report ORDER_EXISTS. From a
        cart, the cart's conversion is appended in the same atomic write.

        ``customer`` resolves the contact when the order names it by identity; it is called
        only once the order itself validated, so bad input never leaves a guest contact."""
        order_id = self.order_id_for(cmd.order_id, request_id)
        if customer is not None:
            self._decide(cmd, str(uuid.UUID(int=0)), datetime.now(UTC))
            cmd = replace(cmd, contact_id=await customer())

        async def plan(_attempt: int) -> tuple[list[Event], list[StreamAppend]]:
            return await self._plan(cmd, order_id, request_id, meta)

        return await self.runner.create(ORDER, order_id, plan, request_id=request_id, meta=meta)

    @staticmethod
    def _decide(cmd: PlaceOrder, order_id: str, placed_at: datetime) -> list[Event]:
        return orders.decide_place(
            order_id,
            cmd.contact_id,
            cmd.currency,
            cmd.items,
            shipping=cmd.shipping,
            tax=cmd.tax,
            placed_at=cmd.placed_at or placed_at,
            external_ref=cmd.external_ref,
            cart_id=cmd.cart_id,
            source="cart" if cmd.cart_id else cmd.source,
        )

    async def _plan(
        self, cmd: PlaceOrder, order_id: str, request_id: str, meta: Mapping[str, Any]
    ) -> tuple[list[Event], list[StreamAppend]]:
        """The order's events and, from a cart, the cart's conversion (decided from the cart's
        stream as it is now: a conflict decides again)."""
        if not cmd.cart_id:
            return self._decide(cmd, order_id, datetime.now(UTC)), []
        cart = await self.runner.get(CART, cmd.cart_id)
        if cmd.currency and cmd.currency.strip().upper() != cart.currency:
            raise Invalid(
                [
                    (
                        "currency",
                        "MIXED_CURRENCIES",
                        f"{cmd.currency} differs from the cart's {cart.currency}",
                    )
                ]
            )
        # The cart's checks come first (an empty cart is CART_EMPTY, not EMPTY_ORDER).
        converted = carts.decide_convert(cart, cmd.cart_id, order_id)
        stream = carts.stream_of(cart.cart_id)
        conversion = StreamAppend(
            stream, CART.events(stream, converted, request_id, meta), cart.version
        )
        cmd = replace(
            cmd, contact_id=cart.contact_id, currency=cart.currency, items=list(cart.items)
        )
        return self._decide(cmd, order_id, datetime.now(UTC)), [conversion]

    async def pay(self, order_id: str, amount: int, payment_ref: str, **kw: Any) -> Order:
        return await self.runner.execute(
            ORDER, order_id, lambda o: orders.decide_pay(o, amount, payment_ref), **kw
        )

    async def ship(
        self,
        order_id: str,
        shipment_id: str,
        carrier: str,
        tracking_number: str,
        tracking_url: str,
        **kw: Any,
    ) -> Order:
        return await self.runner.execute(
            ORDER,
            order_id,
            lambda o: orders.decide_ship(o, shipment_id, carrier, tracking_number, tracking_url),
            **kw,
        )

    async def deliver(self, order_id: str, **kw: Any) -> Order:
        return await self.runner.execute(ORDER, order_id, orders.decide_deliver, **kw)

    async def cancel(self, order_id: str, reason: str, **kw: Any) -> Order:
        return await self.runner.execute(
            ORDER, order_id, lambda o: orders.decide_cancel(o, reason), **kw
        )

    async def refund(
        self,
        order_id: str,
        amount: int,
        lines: Sequence[Mapping[str, Any]],
        reason: str,
        refund_id: str,
        **kw: Any,
    ) -> Order:
        return await self.runner.execute(
            ORDER,
            order_id,
            lambda o: orders.decide_refund(o, amount, lines, reason, refund_id),
            **kw,
        )
