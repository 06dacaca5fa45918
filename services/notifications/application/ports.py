"""What the message pipeline needs from outside: contacts (profile, identity, consent) and
orders (metrics, carts, orders) over their gRPC APIs, and its own tables (outbox, marketing
sends, timers, recipients), written in the event store's transaction. Adapters implement them
for real; tests may fake contacts and orders behind them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from services.notifications.domain.decision import ConsentUsed
from services.notifications.domain.links import Link
from shared.eventstore import StreamAppend


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """A contact as contacts' GetContact answers: ``contact_id`` is the survivor's when the one
    asked for was merged into it."""

    contact_id: str
    email: str = ""
    phone: str = ""
    locale: str = ""
    time_zone: str = ""
    archived: bool = False
    erased: bool = False
    profile: Mapping[str, Any] = field(default_factory=dict)  # what templates read as `contact`


class Contacts(Protocol):
    async def get(self, contact_id: str) -> ContactFacts | None:
        """None when contacts knows no such contact."""
        ...

    async def find(self, kind: str, value: str) -> str | None:
        """The contact holding an identity (kind: email, phone or external_id), or None."""
        ...

    async def consent(self, contact_id: str, channel: str) -> ConsentUsed:
        """The consent and suppression of ``channel`` now (CHANNEL_EMAIL or CHANNEL_SMS: both
        APIs name them alike)."""
        ...

    async def get_many(self, contact_ids: Sequence[str]) -> dict[str, ContactFacts]:
        """Several contacts at once, each as ``get`` answers it (keyed by the id asked for;
        an id contacts does not know is absent)."""
        ...

    async def consents(self, contact_ids: Sequence[str]) -> dict[str, dict[str, ConsentUsed]]:
        """Several contacts' consents now, by contact id then channel, each as ``consent``
        answers it (a channel never recorded, or a contact contacts does not know, absent)."""
        ...


class Orders(Protocol):
    """What a template may read from orders, as template data."""

    async def metrics(self, contact_id: str) -> dict[str, Any]:
        """The customer's metrics (zeros for a contact with no orders)."""
        ...

    async def cart(self, cart_id: str) -> dict[str, Any] | None:
        """A cart (its contact_id included); None when orders knows none."""
        ...

    async def order(self, order_id: str) -> dict[str, Any] | None:
        """An order (its contact_id included); None when orders knows none."""
        ...


@dataclass(frozen=True, slots=True)
class Queued:
    """An outbox row: a rendered message waiting for (another) attempt."""

    message_id: str
    contact_id: str  # "" for a test message
    channel: str
    address: str
    due_at: datetime
    sender: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    test: bool = False
    attempt: int = 0  # the last attempt dispatched (0: none yet)
    in_flight: bool = False  # dispatched, no outcome recorded (in doubt once due again)


@dataclass(frozen=True, slots=True)
class Deferred:
    """A durable timer: decide ``message_id`` again (decision number ``decision``) at
    ``due_at``, with what the first request gave (its data is personal: kept here, not in
    events)."""

    message_id: str
    decision: int
    due_at: datetime
    requested_contact_id: str
    template_id: str
    template_version: int
    kind: str
    locale: str = ""
    webhook_url: str = ""
    request_id: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    cart_id: str = ""  # the cart or order the message is about, read again at the decision
    order_id: str = ""


class Deciding(Protocol):
    """A batch of decisions' transaction, their contacts locked: what it reads and writes
    commits with the decisions' events, or not at all."""

    async def marketing_sends(
        self, keys: Sequence[tuple[str, str]], since: datetime
    ) -> dict[tuple[str, str], tuple[int, datetime | None]]:
        """For each (contact_id, channel): marketing sends there since ``since``, and the
        latest one ever (absent: none)."""
        ...

    async def append(self, appends: Sequence[StreamAppend]) -> None: ...

    async def enqueue(self, rows: Sequence[tuple[Queued, datetime | None]]) -> None:
        """SENDs' rows at once: each outbox row, where the message goes (its recipient), and
        for marketing the send the caps count (at the instant paired with the row)."""
        ...

    async def record_links(self, links: Sequence[tuple[str, str, Link]]) -> None:
        """The tracked links of SENDs' HTML, as (message_id, contact_id, link): the click
        endpoint redirects only to these."""
        ...

    async def defer(self, timer: Deferred) -> None: ...

    async def fired(self, message_id: str) -> None:
        """The message's timer did its work: gone."""
        ...


@dataclass(frozen=True, slots=True)
class Settlement:
    """An attempt's outcome as written: its event, and its row retired (``retry_at`` None) or
    due again at ``retry_at``."""

    message_id: str
    append: StreamAppend
    retry_at: datetime | None
    provider_id: str = ""  # the next hop's id of a sent message
    contact_id: str = ""


class PipelineTables(Protocol):
    def deciding(self, contact_ids: Sequence[str]) -> AbstractAsyncContextManager[Deciding]:
        """A transaction of the event store with the contacts locked (one decision at a time
        per contact: caps hold under concurrency; locked in one order: no deadlock)."""
        ...

    async def due_timers(self, now: datetime, limit: int) -> list[Deferred]: ...

    async def due_outbox(self, now: datetime, limit: int) -> list[Queued]: ...

    async def dispatch(
        self, appends: Sequence[StreamAppend], rows: Sequence[Queued], lease_until: datetime
    ) -> None:
        """One transaction: the MessageDispatched events, and the rows marked in flight at their
        new attempt, due again at ``lease_until`` (then in doubt) unless an outcome comes."""
        ...

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        """One transaction for a batch's outcomes: each outcome's event with its row retired
        or due again, and a sent message's ``provider_id`` remembered (SMS status callbacks
        name it); all of them or, should it fail, none (then they are in doubt)."""
        ...
