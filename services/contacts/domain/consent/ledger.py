"""The state of a consent ledger, per channel, and its fold: ``evolve`` applies one event.

Consent (the state a contact stated) and suppression (the channel must not be used) are kept
apart: neither changes the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.contacts.domain.consent.events import (
    CONFIRMED,
    GRANTED,
    NEVER,
    PENDING,
    REQUESTED,
    SUBSCRIBED,
    SUPPRESSED,
    TYPES,
    UNSUBSCRIBED,
    UNSUPPRESSED,
    WITHDRAWN,
)


@dataclass(frozen=True, slots=True)
class Terms:
    """What a statement was made under."""

    legal_basis: str = ""
    source: str = ""
    policy_version: str = ""

    def fields(self) -> dict[str, str]:
        return {
            k: v for k in ("legal_basis", "source", "policy_version") if (v := getattr(self, k))
        }

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Terms:
        return cls(
            data.get("legal_basis", ""), data.get("source", ""), data.get("policy_version", "")
        )


@dataclass(frozen=True, slots=True)
class Pending:
    """An open double opt-in request."""

    terms: Terms
    requested_at: datetime
    expires_at: datetime
    token_sha256: str = ""


@dataclass(frozen=True, slots=True)
class Suppression:
    reason: str
    note: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ChannelConsent:
    channel: str
    state: str = NEVER  # the stated consent: never_subscribed, subscribed or unsubscribed
    terms: Terms = Terms()  # of the statement that set `state`
    changed_at: datetime | None = None
    pending: Pending | None = None  # the last request; it may have expired
    suppression: Suppression | None = None
    version: int = -1  # stream version of the last event on this channel

    def open_request(self, at: datetime) -> Pending | None:
        return self.pending if self.pending is not None and at < self.pending.expires_at else None

    def effective_state(self, at: datetime) -> str:
        """The state at instant ``at``: an open request shows as pending, except on a channel
        already subscribed (a re-consent to new terms keeps the old ones until confirmed)."""
        if self.state != SUBSCRIBED and self.open_request(at) is not None:
            return PENDING
        return self.state


@dataclass(frozen=True, slots=True)
class Token:
    """A confirmation token of the ledger, known by its SHA-256 only."""

    channel: str
    expires_at: datetime
    status: str  # open, used, superseded


@dataclass(frozen=True, slots=True)
class Ledger:
    contact_id: str
    channels: Mapping[str, ChannelConsent] = field(default_factory=dict)
    tokens: Mapping[str, Token] = field(default_factory=dict)
    version: int = -1

    def channel(self, name: str) -> ChannelConsent:
        return self.channels.get(name) or ChannelConsent(name)


def evolve_channel(
    ch: ChannelConsent, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> ChannelConsent:
    """Fold one event into its channel (the read model uses this alone)."""
    if type_ in (GRANTED, CONFIRMED, WITHDRAWN):
        state = UNSUBSCRIBED if type_ == WITHDRAWN else SUBSCRIBED
        # Any statement closes an open request (confirming it, or superseding it).
        return replace(
            ch, state=state, terms=Terms.of(data), changed_at=at, pending=None, version=version
        )
    if type_ == REQUESTED:
        pending = Pending(
            Terms.of(data),
            at,
            datetime.fromisoformat(data["expire_time"]),
            data.get("token_sha256", ""),
        )
        return replace(ch, pending=pending, version=version)
    if type_ == SUPPRESSED:
        s = Suppression(data.get("reason", ""), data.get("note", ""), at)
        return replace(ch, suppression=s, version=version)
    if type_ == UNSUPPRESSED:
        return replace(ch, suppression=None, version=version)
    return ch


def evolve(
    ledger: Ledger, type_: str, data: Mapping[str, Any], at: datetime, version: int
) -> Ledger:
    if type_ not in TYPES:
        return replace(ledger, version=version)
    before = ledger.channel(data["channel"])
    after = evolve_channel(before, type_, data, at, version)
    tokens = dict(ledger.tokens)
    if type_ in (GRANTED, WITHDRAWN, REQUESTED, CONFIRMED) and before.pending is not None:
        old = tokens.get(before.pending.token_sha256)
        if old is not None and old.status == "open":
            used = type_ == CONFIRMED and data.get("token_sha256") == before.pending.token_sha256
            tokens[before.pending.token_sha256] = replace(
                old, status="used" if used else "superseded"
            )
    if type_ == REQUESTED and after.pending is not None:
        tokens[after.pending.token_sha256] = Token(after.channel, after.pending.expires_at, "open")
    return Ledger(ledger.contact_id, {**ledger.channels, after.channel: after}, tokens, version)


def fold(contact_id: str, events: Iterable[tuple[str, Mapping[str, Any], datetime, int]]) -> Ledger:
    ledger = Ledger(contact_id)
    for type_, data, at, version in events:
        ledger = evolve(ledger, type_, data, at, version)
    return ledger
