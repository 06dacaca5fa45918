"""The delivery port: what the dispatcher hands the delivery workers and what it gets back.
The workers are the `delivery` role (a nameko service behind DeliveryService in
protos/crm/notifications/v1/delivery.proto); tests use an in-memory fake of this Protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Status = Literal["sent", "retry", "rejected"]


@dataclass(frozen=True, slots=True)
class Outbound:
    """A rendered message, ready to send. ``message_id`` is the idempotency key."""

    message_id: str
    channel: str  # variant.EMAIL | variant.SMS | variant.WEBHOOK
    to: str  # email address, E.164 number or URL
    sender: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    body: str = ""
    headers: tuple[tuple[str, str], ...] = field(default=())
    attempt: int = 1
    test: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    message_id: str
    status: Status
    detail: str = ""
    provider_id: str = ""


class Delivery(Protocol):
    async def deliver(self, messages: Sequence[Outbound]) -> list[Outcome]:
        """One outcome per message, in order. Raises only when the workers cannot be reached
        (then nothing is known about the batch: every message of it is in doubt)."""
        ...

    async def ready(self) -> bool:
        """Whether the workers can be reached now (waiting briefly for a connection). The
        dispatcher hands them nothing while they cannot: a batch sent into an outage would
        only use up its messages' attempts in doubt."""
        ...
