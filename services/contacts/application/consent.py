"""Consent ledger handlers: commands (load the consent stream, decide, seal, append) and queries.

- Exactly-once retries: event ids derive from the request id (uuid5), and a retried request
  finds its first event and answers from the ledger as it was then.
- Evidence is sealed with the contact's data key before it reaches the log, and unsealed on
  reading; a destroyed key shows it as erased.
- A confirmation token is not stored: its secret is derived from the contact's key and the
  request's event id (HKDF), so a retried request returns the same token, nobody without the
  key can compute one, and erasing the contact voids every open token.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.contacts.adapters import keys
from services.contacts.adapters.consent_readmodel import ConsentReadModel
from services.contacts.application.consent_now import consent_now, fold_ledger
from services.contacts.domain import consent as domain
from services.contacts.domain.consent import (
    ChannelConsent,
    Evidence,
    Ledger,
    RecordConsent,
    Suppress,
    Unsuppress,
)
from shared.application.commands import Aggregate, CommandRunner, event_id
from shared.domain.errors import Invalid, NotFound, Precondition
from shared.eventstore import EventStore, RecordedEvent

# Event ids derive from request ids in this namespace. Never change it: a retried request would
# be executed twice, and the confirmation token of a retried RecordConsent would change.
LEDGER: Aggregate[Ledger] = Aggregate(
    namespace=uuid.UUID("0b8e3f5c-7d4a-4c1e-9f2b-5a6d8c3e1f70"),
    stream_of=domain.stream_of,
    fold=domain.fold,
    evolve=domain.evolve,  # type: ignore[arg-type]  # a ledger always exists (empty at first)
    missing="",
)
MAX_PAGE = 1000
DEFAULT_PAGE = 100

Clock = Callable[[], datetime]
# decide(ledger, now, id of the first event to append) -> events
Decider = Callable[[Ledger, datetime, uuid.UUID], Awaitable[list[domain.Event]]]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Written:
    ledger: Ledger  # after the command
    changed: bool  # False: nothing was appended (a no-op or a retried request's replay)
    first: uuid.UUID | None  # id of the first event the command appended (now or originally)
    now: datetime


@dataclass(frozen=True, slots=True)
class Recorded:
    consent: ChannelConsent
    changed: bool
    now: datetime
    token: str = ""
    token_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One history entry: the event with its personal fields unsealed."""

    event: RecordedEvent
    data: dict[str, Any]
    evidence_erased: bool


class ConsentLedgers:
    def __init__(
        self,
        store: EventStore,
        pool: asyncpg.Pool,
        *,
        clock: Clock = utcnow,
        ttl: timedelta = domain.DEFAULT_TTL,
    ) -> None:
        self.store = store
        self.runner = CommandRunner(store)
        self.keys = keys.DataKeys(pool)
        self.read_model = ConsentReadModel(pool)
        self.clock = clock
        self.ttl = ttl

    # --- commands ------------------------------------------------------------------------------

    async def record(
        self,
        contact_id: str,
        cmd: RecordConsent,
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> Recorded:
        cmd = domain.validate_record(cmd, self.clock())
        key: bytes | None = None
        if cmd.double_opt_in or cmd.evidence.fields():
            key = await self._key(contact_id)

        def token_for(event_id: uuid.UUID) -> str:
            assert key is not None
            return domain.make_token(contact_id, _token_secret(key, event_id))

        async def decide(ledger: Ledger, now: datetime, first: uuid.UUID) -> list[domain.Event]:
            token_hash = domain.token_sha256(token_for(first)) if cmd.double_opt_in else ""
            return domain.decide_record(ledger, cmd, now=now, ttl=self.ttl, token_hash=token_hash)

        w = await self._write(contact_id, decide, key, request_id, meta)
        ch = w.ledger.channel(cmd.channel)
        token, expires = "", None
        if cmd.double_opt_in and w.first is not None and ch.pending is not None:
            # the request this call made (or, for a retry, made originally)
            token = token_for(w.first)
            if domain.token_sha256(token) == ch.pending.token_sha256:
                expires = ch.pending.expires_at
            else:
                token = ""  # superseded since: no token to hand out
        return Recorded(ch, w.changed, w.now, token, expires)

    async def confirm(
        self, token: str, evidence: Evidence, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> tuple[str, ChannelConsent, datetime]:
        contact_id = domain.token_contact(token)
        problems: domain.Problems = []
        evidence = domain.validate_evidence(evidence, problems)
        if problems:
            raise Invalid(problems)
        token_hash = domain.token_sha256(token)
        key = await self._key(contact_id) if evidence.fields() else None

        async def decide(ledger: Ledger, now: datetime, first: uuid.UUID) -> list[domain.Event]:
            return domain.decide_confirm(ledger, token_hash, evidence, now)

        w = await self._write(contact_id, decide, key, request_id, meta, unknown_token=token_hash)
        channel = w.ledger.tokens[token_hash].channel
        return contact_id, w.ledger.channel(channel), w.now

    async def suppress(
        self, contact_id: str, cmd: Suppress, *, request_id: str = "", meta: Mapping[str, Any] = {}
    ) -> tuple[ChannelConsent, bool, datetime]:
        cmd = domain.validate_suppress(cmd)

        async def decide(ledger: Ledger, now: datetime, first: uuid.UUID) -> list[domain.Event]:
            return domain.decide_suppress(ledger, cmd)

        w = await self._write(contact_id, decide, None, request_id, meta)
        return w.ledger.channel(cmd.channel), w.changed, w.now

    async def unsuppress(
        self,
        contact_id: str,
        cmd: Unsuppress,
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> tuple[ChannelConsent, bool, datetime]:
        cmd = domain.validate_unsuppress(cmd)

        async def decide(ledger: Ledger, now: datetime, first: uuid.UUID) -> list[domain.Event]:
            return domain.decide_unsuppress(ledger, cmd)

        w = await self._write(contact_id, decide, None, request_id, meta)
        return w.ledger.channel(cmd.channel), w.changed, w.now

    async def _write(
        self,
        contact_id: str,
        decide: Decider,
        key: bytes | None,
        request_id: str,
        meta: Mapping[str, Any],
        *,
        unknown_token: str = "",
    ) -> Written:
        """Decide and append on the shared command runner: a retry (concurrent or later) gets
        the first execution's ledger. ``decide`` gets the id of the first event it would
        append (confirmation tokens derive from it)."""
        request_id = request_id or uuid.uuid4().hex
        first = event_id(LEDGER.namespace, request_id, domain.stream_of(contact_id), 0)
        now = self.clock()

        async def decided(ledger: Ledger) -> list[domain.Event]:
            nonlocal now
            now = self.clock()
            if unknown_token and unknown_token not in ledger.tokens:
                # checked before the contact: a forged token learns nothing about contacts
                raise NotFound("TOKEN_NOT_FOUND", "no confirmation request has this token")
            await self._check_contact(contact_id)
            events = await decide(ledger, now, first)
            return [(t, self._seal(key, contact_id, d)) for t, d in events]

        done = await self.runner.run(
            LEDGER, contact_id, decided, request_id=request_id, meta=meta, must_exist=False
        )
        return Written(done.state, done.appended, done.first_event_id, now)

    @staticmethod
    def _seal(key: bytes | None, contact_id: str, data: dict[str, Any]) -> dict[str, Any]:
        if "evidence" not in data:
            return data
        assert key is not None, "the key is fetched whenever a command carries evidence"
        return keys.seal(key, contact_id, data)

    async def _key(self, contact_id: str) -> bytes:
        """The contact's live data key. An erased contact is reported as such (its key is gone)."""
        key = await self.keys.get(contact_id)
        if key is None:
            await self._check_contact(contact_id)
            raise Precondition(
                "DATA_KEY_MISSING",
                f"contact {contact_id} has no data key; evidence cannot be stored",
                contact_id=contact_id,
            )
        return key

    async def _check_contact(self, contact_id: str) -> None:
        events = await self.store.read_stream(f"contact-{contact_id}")
        domain.check_writable(contact_id, ((e.type, e.data) for e in events))

    # --- queries -------------------------------------------------------------------------------

    async def current(self, contact_id: str) -> tuple[dict[str, ChannelConsent], datetime]:
        """Every channel now (see consent_now.py), and the instant it was read at."""
        now = self.clock()
        found = await consent_now(self.store, self.read_model, [contact_id])
        if contact_id not in found:
            raise NotFound("CONTACT_NOT_FOUND", f"no contact {contact_id}", contact_id=contact_id)
        return found[contact_id], now

    async def current_many(
        self, contact_ids: Sequence[str]
    ) -> tuple[dict[str, dict[str, ChannelConsent]], datetime]:
        """Every channel now of each contact that exists (unknown ids left out), and the
        instant they were read at."""
        now = self.clock()
        return await consent_now(self.store, self.read_model, contact_ids), now

    async def as_of(self, contact_id: str, at: datetime) -> dict[str, ChannelConsent]:
        """Every channel as it stood at ``at``: a fold of the events recorded until then."""
        if at > self.clock():
            raise Invalid([("as_of_time", "INVALID_AS_OF_TIME", "as_of_time is in the future")])
        recorded = await self.store.read_stream(domain.stream_of(contact_id))
        if not recorded:
            await self._check_exists(contact_id)
        own = dict(fold_ledger(contact_id, [e for e in recorded if e.recorded_at <= at]).channels)
        return await self._with_merged(contact_id, own, at)

    async def _with_merged(
        self, contact_id: str, own: dict[str, ChannelConsent], at: datetime | None
    ) -> dict[str, ChannelConsent]:
        """Fold in the ledgers of contacts merged into this one (at ``at``, or now)."""
        profile = await self.store.read_stream(f"contact-{contact_id}")
        merged = domain.absorbed(
            (e.type, e.data) for e in profile if at is None or e.recorded_at <= at
        )
        if not merged:
            return own
        streams = [domain.stream_of(m) for m in merged]
        ledgers = []
        for m, stream in zip(merged, streams, strict=True):
            events = await self.store.read_stream(stream)
            events = [e for e in events if at is None or e.recorded_at <= at]
            ledgers.append(fold_ledger(m, events).channels)
        return domain.with_merged(own, ledgers)

    async def history(
        self, contact_id: str, channel: str, page_size: int, page_token: str
    ) -> tuple[list[Entry], str]:
        """A page of ledger entries in stream order, and the token of the next page ("" at the
        end)."""
        problems: domain.Problems = []
        domain.check_channel(channel, problems, required=False)
        if not 0 <= page_size <= MAX_PAGE:
            problems.append(("page_size", "INVALID_PAGE_SIZE", f"page_size must be 0..{MAX_PAGE}"))
        after = _decode_token(page_token, contact_id, channel) if page_token else -1
        if problems:
            raise Invalid(problems)
        size = page_size or DEFAULT_PAGE
        stream = domain.stream_of(contact_id)
        page: list[RecordedEvent] = []
        more, cursor, limit = False, after, max(size + 1, 100)
        while True:  # more than one read only when a channel filter skips entries
            chunk = await self.store.read_stream(stream, cursor + 1, limit=limit)
            for e in chunk:
                if channel and e.data.get("channel") != channel:
                    continue
                if len(page) == size:
                    more = True
                    break
                page.append(e)
            if more or len(chunk) < limit:
                break
            cursor = chunk[-1].version
        if not page and after < 0:
            await self._check_exists(contact_id)
        key = None
        if any(keys.SEALED in e.data for e in page):
            key = await self.keys.get(contact_id)
        entries = [Entry(e, *keys.unseal(key, contact_id, e.data)) for e in page]
        token = _encode_token(page[-1].version, contact_id, channel) if more else ""
        return entries, token

    async def _check_exists(self, contact_id: str) -> None:
        if await self.store.stream_version(f"contact-{contact_id}") < 0:
            raise NotFound("CONTACT_NOT_FOUND", f"no contact {contact_id}", contact_id=contact_id)


def _token_secret(key: bytes, event_id: uuid.UUID) -> bytes:
    # A key derived for this purpose only: the data key itself is an AES-GCM key.
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=domain.TOKEN_SECRET_BYTES,
        salt=None,
        info=b"crm consent confirmation token\x00" + event_id.bytes,
    )
    return hkdf.derive(key)


def _encode_token(version: int, contact_id: str, channel: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([version, contact_id, channel])).decode()


def _decode_token(token: str, contact_id: str, channel: str) -> int:
    try:
        version, cid, ch = orjson.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        ok = isinstance(version, int) and version >= 0 and (cid, ch) == (contact_id, channel)
    except (ValueError, TypeError, UnicodeEncodeError):
        ok = False
    if not ok:
        raise Invalid(
            [("page_token", "INVALID_PAGE_TOKEN", "not a token of this contact and channel filter")]
        )
    return int(version)
