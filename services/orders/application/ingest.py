"""Shop-platform ingestion: what a platform adapter maps a webhook to, and how it is executed.

A platform module (adapters/platforms/<name>.py) only verifies and maps; this module runs the
commands. Idempotency comes from the platform's own ids: each command's request id and the
order id are derived from them, so a redelivered webhook finds its events and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.orders.application.commands import OrderCommands, PlaceOrder
from services.orders.application.directory import ContactDirectory
from services.orders.domain.order import Order


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


Command = Place | Pay | Ship | Deliver | Cancel | Refund


class Platform(Protocol):
    name: str

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True when the body carries the platform's valid signature."""
        ...

    def map(self, headers: Mapping[str, str], payload: Mapping[str, Any]) -> list[Command]:
        """The commands a webhook means; [] for a topic that changes nothing here. Raises
        Invalid for a payload that cannot be mapped, UnknownTopic for a topic not handled."""
        ...


class UnknownTopic(Exception):
    pass


class Ingestor:
    def __init__(self, orders: OrderCommands, directory: ContactDirectory) -> None:
        self.orders, self.directory = orders, directory

    async def run(self, commands: Sequence[Command], meta: Mapping[str, Any]) -> Order | None:
        last: Order | None = None
        for c in commands:
            last = await self._one(c, {**meta, "request_id": c.request_id})
        return last

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
