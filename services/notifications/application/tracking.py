"""What the tracking endpoints do (the HTTP adapter is adapters/tracking_http.py): a signed token
names a message; the message's own stream (read from the log: consistent, no projection lag)
says whose it is, on which channel. Nothing here ever writes on a bad token.

- **open**: MessageOpened, at most one per message per minute (the event id derives from the
  message and the minute, so the store keeps the first).
- **click**: the URL recorded for the message and the token's link index, and MessageClicked
  (the index and the host), at most one per message and link per minute; an unknown link is
  refused, never redirected (no open redirect).
- **unsubscribe**: contacts records the withdrawal of the channel's consent (RecordConsent,
  with the source and the evidence: IP address, user agent), then MessageUnsubscribed. Both
  carry ids derived from the message and the number of unsubscriptions it already recorded:
  a repeated POST, or a retry after a crash between the two, has one effect. A POST while
  the message already unsubscribed its contact and the consent is still withdrawn is a repeat
  (nothing written); after a new subscription the same link unsubscribes again."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from services.notifications.application.message_stream import MESSAGE
from services.notifications.application.ports import Contacts
from services.notifications.domain import decision as d
from services.notifications.domain import links, policy, tracking
from services.notifications.domain.trail import Trail
from services.notifications.domain.unsubscribe import Unsubscribe
from shared.application.commands import CommandRunner
from shared.domain.errors import NotFound
from shared.eventstore import EventStore, StreamState

ACTOR = {"schema": 1, "actor": "notifications-tracking"}
ONE_CLICK = "list-unsubscribe"  # RFC 8058: the mailbox's POST
PAGE = "unsubscribe-page"  # the button of the page GET /u/<token> shows


class Result(enum.Enum):
    RECORDED = "recorded"  # an event appended
    REPEAT = "repeat"  # already recorded (the dedup window, or an unsubscription standing)
    UNKNOWN = "unknown"  # a bad or forged token, an unknown message or link: nothing written
    TEST = "test"  # a test message: no contact to unsubscribe, nothing written
    GONE = "gone"  # the contact was erased (or contacts does not know it): nothing written


@dataclass(frozen=True, slots=True)
class Evidence:
    ip: str  # "" when unknown
    user_agent: str


class Links(Protocol):
    async def url(self, message_id: str, index: int) -> str | None:
        """The URL recorded for a message's link, None when there is none."""
        ...


class ConsentLedger(Protocol):
    async def withdraw(
        self, contact_id: str, channel: str, source: str, evidence: Evidence, request_id: str
    ) -> bool:
        """Contacts records UNSUBSCRIBED on the channel; whether that changed anything."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class Tracking:
    def __init__(
        self,
        store: EventStore,
        links: Links,
        contacts: Contacts,
        ledger: ConsentLedger,
        tokens: tracking.TrackingTokens,
        unsubscribe: Unsubscribe,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.store, self.links, self.contacts, self.ledger = store, links, contacts, ledger
        self.tokens, self.unsubscribe, self.clock = tokens, unsubscribe, clock
        self.runner = CommandRunner(store)

    async def _message(self, message_id: str | None) -> Trail | None:
        if message_id is None:
            return None
        try:
            return await self.runner.get(MESSAGE, message_id)
        except NotFound:
            return None

    async def _append(self, message_id: str, event: d.Event, key: str) -> Result:
        stream = d.stream_of(message_id)
        new = MESSAGE.events(stream, [event], key, ACTOR)
        done = await self.store.append(stream, new, StreamState.ANY)
        return Result.REPEAT if done.idempotent else Result.RECORDED

    async def open(self, token: str) -> Result:
        message_id = self.tokens.opened(token)
        if await self._message(message_id) is None:
            return Result.UNKNOWN
        assert message_id is not None
        key = f"open:{message_id}:{tracking.minute(self.clock())}"
        return await self._append(message_id, tracking.opened(message_id), key)

    async def click(self, token: str) -> tuple[Result, str]:
        """The result and, unless UNKNOWN, the URL to redirect to."""
        named = self.tokens.clicked(token)
        if named is None:
            return Result.UNKNOWN, ""
        message_id, index = named
        url = await self.links.url(message_id, index)
        if url is None or await self._message(message_id) is None:
            return Result.UNKNOWN, ""
        key = f"click:{message_id}:{index}:{tracking.minute(self.clock())}"
        event = tracking.clicked(message_id, index, links.host_of(url))
        return await self._append(message_id, event, key), url

    async def unsubscribable(self, token: str) -> Result:
        """GET /u/<token>: whether the page may offer the button (it writes nothing)."""
        message = await self._message(self.unsubscribe.message_of(token))
        if message is None or message.channel not in policy.CONSENTED_CHANNELS:
            return Result.UNKNOWN
        return Result.TEST if message.test or not message.contact_id else Result.RECORDED

    async def unsubscribe_by(self, token: str, source: str, evidence: Evidence) -> Result:
        """POST /u/<token>: withdraw the consent of the message's contact on its channel."""
        message = await self._message(self.unsubscribe.message_of(token))
        if message is None or message.channel not in policy.CONSENTED_CHANNELS:
            return Result.UNKNOWN
        if message.test or not message.contact_id:
            return Result.TEST
        contact = await self.contacts.get(message.contact_id)
        if contact is None or contact.erased:
            return Result.GONE
        earlier = sum(1 for _, t, _ in message.delivery if t == tracking.UNSUBSCRIBED)
        if earlier:
            consent = await self.contacts.consent(contact.contact_id, message.channel)
            if consent.state != policy.SUBSCRIBED:  # still withdrawn since: a repeat
                return Result.REPEAT
        key = f"unsubscribe:{message.message_id}:{earlier}"
        changed = await self.ledger.withdraw(
            contact.contact_id, message.channel, source, evidence, key
        )
        event = tracking.unsubscribed(
            message.message_id, contact.contact_id, message.channel, source, changed
        )
        return await self._append(message.message_id, event, key)
