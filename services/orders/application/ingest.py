"""Shop-platform ingestion: what a platform adapter maps a webhook to, and how it is executed.

A platform module (adapters/platforms/<name>.py) only verifies and maps; this module runs the
commands. Idempotency comes from the platform's own ids: each command's request id and the
order id are derived from them, so a redelivered webhook finds its events and changes nothing.
Out-of-order lifecycle deliveries are kept, never dropped: see ``Ingestor``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import structlog

from services.orders.application.commands import ORDER, OrderCommands, PlaceOrder
from services.orders.application.directory import ContactDirectory
from services.orders.domain.order import Order
from shared.domain.errors import DomainError, Precondition
from shared.eventstore import DuplicateEventId, NewEvent, StreamState

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Place:
    order: PlaceOrder  # contact_id empty: resolved from ``customer``
    customer: tuple[str, str]  # (kind, value): email, phone or external_id
    request_id: str


@dataclass(frozen=True)
class Pay:
    order_id: str
    request_id: str
    payment_ref: str = ""


@dataclass(frozen=True)
class Ship:
    order_id: str
    request_id: str
    shipment_id: str
    carrier: str
    tracking_number: str = ""
    tracking_url: str = ""


@dataclass(frozen=True)
class Deliver:
    order_id: str
    request_id: str


@dataclass(frozen=True)
class Cancel:
    order_id: str
    request_id: str
    reason: str = ""


@dataclass(frozen=True)
class Refund:
    order_id: str
    request_id: str
    refund_id: str
    amount: int
    lines: Sequence[Mapping[str, Any]] = field(default_factory=list)
    reason: str = ""


Lifecycle = Pay | Ship | Deliver | Cancel | Refund  # what an existing order goes through
Command = Place | Lifecycle


class Platform(Protocol):
    name: str

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True when the body carries the platform's valid signature."""
        ...

    def serves(self, headers: Mapping[str, str]) -> bool:
        """True when the delivery names a shop this deployment serves (the signature covers
        the body only, so the sender's headers are checked on their own)."""
        ...

    def map(self, headers: Mapping[str, str], payload: Any) -> list[Command]:
        """The commands a webhook means. Raises Invalid for a payload that cannot be mapped
        or does not agree with its topic, UnknownTopic for a topic not handled."""
        ...


class UnknownTopic(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    order: Order | None
    deferred: tuple[str, ...] = ()  # why each kept command cannot be applied yet
    already: bool = False  # every command's effect was already there


KEPT = "orders.inbox.DeliveryKept"  # internal: not published, no consumer but this module
SETTLED = "orders.inbox.DeliverySettled"
KINDS: dict[str, Callable[..., Lifecycle]] = {
    c.__name__: c for c in (Pay, Ship, Deliver, Cancel, Refund)
}
_NS = uuid.UUID("3c9e2b7a-41f6-4d0e-8a5b-6e1f7d2c9b84")


def inbox_of(order_id: str) -> str:
    return f"webhookinbox-{order_id}"


def waits(e: Precondition) -> bool:
    """The order's state forbids the command now, but a later event may allow it."""
    return e.reason.startswith("ORDER_") or e.reason == "NOTHING_PAID"


def already_done(o: Order, c: Command) -> bool:
    """The command's effect is already there (a redundant delivery, not an out-of-order one)."""
    match c:
        case Pay():
            return o.paid > 0
        case Deliver():
            return o.state == "DELIVERED"
        case Cancel():
            return o.state == "CANCELLED"
    return False  # Ship and Refund already recorded are no-ops in the domain, never errors


class Ingestor:
    """Runs a delivery's commands. A lifecycle command the order's state does not allow yet
    (out of order: a refund before the payment, ...) is kept in the order's durable inbox
    stream and applied as soon as a later delivery for that order allows it."""

    def __init__(self, orders: OrderCommands, directory: ContactDirectory) -> None:
        self.orders, self.directory = orders, directory
        self.store = orders.runner.store

    async def run(self, commands: Sequence[Command], meta: Mapping[str, Any]) -> Outcome:
        last: Order | None = None
        deferred: list[str] = []
        already = 0
        for c in commands:
            try:
                last = await self._one(c, {**meta, "request_id": c.request_id})
            except Precondition as e:
                if isinstance(c, Place) or not waits(e):
                    raise
                last = await self.orders.runner.get(ORDER, c.order_id)
                if already_done(last, c):
                    already += 1
                    continue
                await self._keep(c, e.reason, meta)
                deferred.append(e.reason)
        if last is not None:  # also after keeping one: what it waited for may have just come
            last = await self._drain(last.order_id) or last
        return Outcome(last, tuple(deferred), already == len(commands))

    async def _keep(self, c: Lifecycle, reason: str, meta: Mapping[str, Any]) -> None:
        data = {"kind": type(c).__name__, "command": asdict(c), "reason": reason}
        event_id = uuid.uuid5(_NS, f"kept\n{c.request_id}")
        event = NewEvent(type=KEPT, data=data, metadata=dict(meta), event_id=event_id)
        await self._append_once(inbox_of(c.order_id), event)

    async def _drain(self, order_id: str) -> Order | None:
        """Apply every kept command the order now allows, in the order they came; repeat while
        one pass made progress (a kept shipment lets a kept delivery through)."""
        last: Order | None = None
        progress = True
        while progress:
            progress = False
            for c, meta in await self._pending(order_id):
                try:
                    last = await self._one(c, meta)
                    result = "applied"
                except Precondition as e:
                    last = await self.orders.runner.get(ORDER, order_id)
                    if waits(e) and not already_done(last, c):
                        continue  # still waiting
                    result = "already_applied" if already_done(last, c) else f"refused:{e.reason}"
                except DomainError as e:
                    result = f"refused:{e.reason}"
                if result.startswith("refused"):
                    log.warning("webhook.kept_refused", order_id=order_id, result=result)
                await self._settle(c, result, meta)
                progress = True
        return last

    async def _pending(self, order_id: str) -> list[tuple[Lifecycle, dict[str, Any]]]:
        events = await self.store.read_stream(inbox_of(order_id))
        settled = {e.data["request_id"] for e in events if e.type == SETTLED}
        kept = [e for e in events if e.type == KEPT]
        return [
            (KINDS[e.data["kind"]](**cmd), {**e.metadata, "request_id": cmd["request_id"]})
            for e in kept
            if (cmd := e.data["command"])["request_id"] not in settled
        ]

    async def _settle(self, c: Lifecycle, result: str, meta: Mapping[str, Any]) -> None:
        data = {"request_id": c.request_id, "result": result}
        event_id = uuid.uuid5(_NS, f"settled\n{c.request_id}")
        event = NewEvent(type=SETTLED, data=data, metadata=dict(meta), event_id=event_id)
        await self._append_once(inbox_of(c.order_id), event)

    async def _append_once(self, stream: str, event: NewEvent) -> None:
        """The first of a request's kept (or settled) records wins: a later delivery with the
        same request id but other content (fulfillments/update after create) adds nothing."""
        with contextlib.suppress(DuplicateEventId):
            await self.store.append(stream, [event], StreamState.ANY)

    async def _one(self, c: Command, meta: Mapping[str, Any]) -> Order:
        kw: dict[str, Any] = {"request_id": c.request_id, "meta": meta}
        match c:
            case Place():
                kind, value = c.customer
                return await self.orders.place(
                    c.order, customer=lambda: self.directory.resolve(kind, value), **kw
                )
            case Pay():
                return await self.orders.pay(c.order_id, 0, c.payment_ref, **kw)
            case Ship():
                return await self.orders.ship(
                    c.order_id, c.shipment_id, c.carrier, c.tracking_number, c.tracking_url, **kw
                )
            case Deliver():
                return await self.orders.deliver(c.order_id, **kw)
            case Cancel():
                return await self.orders.cancel(c.order_id, c.reason, **kw)
            case Refund():
                return await self.orders.refund(
                    c.order_id, c.amount, c.lines, c.reason, c.refund_id, **kw
                )
        raise AssertionError(c)
