"""Command handlers for carts and orders: load the stream, decide, append with the version read
(``Aggregates``), every command answering a retry with its first result (``first_answer``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import crm.orders.v1.events_pb2  # noqa: F401  (the descriptors the upcaster reads)
from services.orders.application.aggregates import (
    ATTEMPTS,
    CART,
    NS,
    ORDER,
    Aggregates,
    Event,
    apply,
    new_events,
)
from services.orders.domain import cart as carts
from services.orders.domain import order as orders
from services.orders.domain.cart import Cart
from services.orders.domain.order import Order
from shared.application.replay import first_answer
from shared.domain.errors import Conflict, Invalid, NotFound
from shared.eventstore import (
    DuplicateEventId,
    EventStore,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)

__all__ = ["CART", "ORDER", "Aggregates", "CartCommands", "OrderCommands", "PlaceOrder"]


class CartCommands:
    def __init__(self, store: EventStore, aggregates: Aggregates | None = None) -> None:
        self.store = store
        self.agg = aggregates or Aggregates(store)

    async def create(
        self, contact_id: str, currency: str, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> Cart:
        cart_id = str(uuid.uuid5(NS, f"cart\n{request_id}") if request_id else uuid.uuid4())
        stream = carts.stream_of(cart_id)
        decided = carts.decide_create(cart_id, contact_id, currency, datetime.now(UTC))
        result = await self.store.append(
            stream, new_events(stream, decided, request_id, meta), StreamState.NO_STREAM
        )
        if result.idempotent:
            return await self.agg.get(CART, cart_id)
        return apply(CART, None, decided, result.recorded_at, result.version)

    async def add(self, cart_id: str, item: Mapping[str, Any], **kw: Any) -> Cart:
        return await self.agg.execute(
            CART, cart_id, lambda c: carts.decide_add(c, cart_id, item), **kw
        )

    async def change(self, cart_id: str, item: Mapping[str, Any], **kw: Any) -> Cart:
        return await self.agg.execute(
            CART, cart_id, lambda c: carts.decide_change(c, cart_id, item), **kw
        )

    async def remove(self, cart_id: str, sku: str, **kw: Any) -> Cart:
        return await self.agg.execute(
            CART, cart_id, lambda c: carts.decide_remove(c, cart_id, sku), **kw
        )

    async def checkout(self, cart_id: str, **kw: Any) -> Cart:
        return await self.agg.execute(
            CART, cart_id, lambda c: carts.decide_checkout(c, cart_id), **kw
        )

    async def abandon(self, cart_id: str, now: datetime, after: timedelta) -> bool:
        """Append CartAbandoned if the cart's own stream says it is due; at most once, however
        many timers race (replicas, a restart mid-way). True if this call wrote it. A cart that
        moved under us is left to the next poll."""
        wrote = await self.agg.append_once(
            CART,
            cart_id,
            lambda c: carts.decide_abandon(c, now, after),
            f"abandon\n{cart_id}",
            "timer",
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
    def __init__(self, store: EventStore, aggregates: Aggregates | None = None) -> None:
        self.store = store
        self.agg = aggregates or Aggregates(store)

    def order_id_for(self, given: str, request_id: str) -> str:
        if given:
            return given
        return str(uuid.uuid5(NS, f"order\n{request_id}") if request_id else uuid.uuid4())

    async def place(
        self,
        cmd: PlaceOrder,
        *,
        customer: Callable[[], Awaitable[str]] | None = None,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Order:
        """Optimistic: append first (the order stream must not exist); only a failure reads the
        order stream, to answer a retry with its first result (``first_answer``: also when the
        failure is CART_CONVERTED by that first attempt) or to report ORDER_EXISTS.

        ``customer`` resolves the contact when the order names it by identity; it is called
        only once the order itself validated, so bad input never leaves a guest contact."""
        order_id = self.order_id_for(cmd.order_id, request_id)
        return await first_answer(
            self._place(cmd, order_id, customer, request_id, meta),
            lambda: self._earlier(order_id, request_id),
        )

    async def _place(
        self,
        cmd: PlaceOrder,
        order_id: str,
        customer: Callable[[], Awaitable[str]] | None,
        request_id: str,
        meta: Mapping[str, Any],
    ) -> Order:
        if customer is not None:
            self._decide(cmd, str(uuid.UUID(int=0)), datetime.now(UTC))
            cmd = replace(cmd, contact_id=await customer())
        for attempt in range(ATTEMPTS):
            appends, decided = await self._plan(cmd, order_id, request_id, meta)
            try:
                if len(appends) == 1:  # the common case: the single-stream fast path
                    a = appends[0]
                    results = [await self.store.append(a.stream, a.events, a.expected_version)]
                else:
                    results = await self.store.append_multi(appends)
            except (WrongExpectedVersion, DuplicateEventId):
                if await self.store.stream_version(orders.stream_of(order_id)) >= 0:
                    raise _order_exists(order_id) from None  # unless it is our own: first_answer
                if attempt == ATTEMPTS - 1:
                    raise
                continue  # a cart moved under us: decide again
            if results[0].idempotent:
                return await self.agg.get(ORDER, order_id)
            return apply(ORDER, None, decided, results[0].recorded_at, results[0].version)
        raise AssertionError("unreachable")

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

    async def _earlier(self, order_id: str, request_id: str) -> Order | None:
        stream = orders.stream_of(order_id)
        if not request_id:
            return None
        return Aggregates.replayed(ORDER, await self.store.read_stream(stream), stream, request_id)

    async def _plan(
        self, cmd: PlaceOrder, order_id: str, request_id: str, meta: Mapping[str, Any]
    ) -> tuple[list[StreamAppend], list[Event]]:
        cart_append: StreamAppend | None = None
        if cmd.cart_id:
            cart = await self.agg.load(CART, cmd.cart_id)
            if cart is None:
                raise NotFound("CART_NOT_FOUND", f"no cart {cmd.cart_id}", id=cmd.cart_id)
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
            cart_stream = carts.stream_of(cart.cart_id)
            cart_append = StreamAppend(
                cart_stream, new_events(cart_stream, converted, request_id, meta), cart.version
            )
            cmd = replace(
                cmd, contact_id=cart.contact_id, currency=cart.currency, items=list(cart.items)
            )
        decided = self._decide(cmd, order_id, datetime.now(UTC))
        stream = orders.stream_of(order_id)
        appends = [
            StreamAppend(
                stream, new_events(stream, decided, request_id, meta), StreamState.NO_STREAM
            )
        ]
        if cart_append is not None:
            appends.append(cart_append)
        return appends, decided

    async def pay(self, order_id: str, amount: int, payment_ref: str, **kw: Any) -> Order:
        return await self.agg.execute(
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
        return await self.agg.execute(
            ORDER,
            order_id,
            lambda o: orders.decide_ship(o, shipment_id, carrier, tracking_number, tracking_url),
            **kw,
        )

    async def deliver(self, order_id: str, **kw: Any) -> Order:
        return await self.agg.execute(ORDER, order_id, orders.decide_deliver, **kw)

    async def cancel(self, order_id: str, reason: str, **kw: Any) -> Order:
        return await self.agg.execute(
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
        return await self.agg.execute(
            ORDER,
            order_id,
            lambda o: orders.decide_refund(o, amount, lines, reason, refund_id),
            **kw,
        )


def _order_exists(order_id: str) -> Exception:
    return Conflict("ORDER_EXISTS", f"order {order_id} already exists", order_id=order_id)
