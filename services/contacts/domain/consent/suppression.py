"""Suppression of a channel (it must not be used: bounces, complaints, a manual block) and its
lifting. Suppression never changes the consent a contact stated, nor the other way round."""

from __future__ import annotations

from dataclasses import dataclass, replace

from services.contacts.domain.consent.events import REASONS, SUPPRESSED, UNSUPPRESSED, Event
from services.contacts.domain.consent.ledger import Ledger
from services.contacts.domain.consent.validation import (
    Problems,
    check_channel,
    clipped_text,
    raise_if_any,
)

MAX_NOTE = 500


@dataclass(frozen=True, slots=True)
class Suppress:
    channel: str
    reason: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Unsuppress:
    channel: str
    note: str = ""


def validate_suppress(cmd: Suppress) -> Suppress:
    p: Problems = []
    check_channel(cmd.channel, p)
    if not cmd.reason:
        p.append(("reason", "REASON_REQUIRED", "reason must be HARD_BOUNCE, COMPLAINT or MANUAL"))
    elif cmd.reason not in REASONS:
        p.append(("reason", "INVALID_REASON", "reason must be HARD_BOUNCE, COMPLAINT or MANUAL"))
    note = clipped_text(cmd.note, "note", MAX_NOTE, p)
    raise_if_any(p)
    return replace(cmd, note=note)


def validate_unsuppress(cmd: Unsuppress) -> Unsuppress:
    p: Problems = []
    check_channel(cmd.channel, p)
    note = clipped_text(cmd.note, "note", MAX_NOTE, p)
    raise_if_any(p)
    return replace(cmd, note=note)


def decide_suppress(ledger: Ledger, cmd: Suppress) -> list[Event]:
    current = ledger.channel(cmd.channel).suppression
    if current is not None and current.reason == cmd.reason:
        return []
    data = {"contact_id": ledger.contact_id, "channel": cmd.channel, "reason": cmd.reason}
    return [(SUPPRESSED, data | ({"note": cmd.note} if cmd.note else {}))]


def decide_unsuppress(ledger: Ledger, cmd: Unsuppress) -> list[Event]:
    if ledger.channel(cmd.channel).suppression is None:
        return []
    data = {"contact_id": ledger.contact_id, "channel": cmd.channel}
    return [(UNSUPPRESSED, data | ({"note": cmd.note} if cmd.note else {}))]
