"""How a contact command turns decisions into stored events and back: event ids derived from the
request id (AIP-155), personal fields sealed with the contact's key, folding sealed events."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from services.contacts.adapters.keys import seal, unseal
from services.contacts.domain import contact as domain
from services.contacts.domain.contact import Contact
from shared.eventstore import DuplicateEventId, NewEvent, RecordedEvent, WrongExpectedVersion

NS = uuid.UUID("6f1c7a3e-2b1d-4f57-9a51-3c2f0e9d8b10")
ATTEMPTS = 3  # optimistic-concurrency retries when an identity stream moved under us


def event_id(request_id: str, stream: str, index: int) -> uuid.UUID:
    """Event ids derived from the request id make a retried command exactly-once (AIP-155)."""
    return uuid.uuid5(NS, f"{request_id}\n{stream}\n{index}")


def new_events(
    stream: str,
    decided: Sequence[domain.Event],
    request_id: str,
    meta: Mapping[str, Any],
    key: bytes | None = None,
) -> list[NewEvent]:
    """Store-ready events; with a key, personal fields are sealed (see adapters/keys.py)."""
    return [
        NewEvent(
            type=t,
            data=seal(key, d["contact_id"], d) if key is not None else d,
            metadata=dict(meta),
            event_id=event_id(request_id, stream, i) if request_id else uuid.uuid4(),
        )
        for i, (t, d) in enumerate(decided)
    ]


def apply_decided(
    state: Contact, decided: Sequence[domain.Event], at: datetime | None, last: int
) -> Contact:
    at = at or datetime.now(UTC)
    first = last - len(decided) + 1
    for i, (t, d) in enumerate(decided):
        state = domain.evolve(state, t, d, at, first + i)
    return state


def fold_contact(events: Sequence[RecordedEvent], key: bytes | None) -> Contact | None:
    return domain.fold(
        (e.type, unseal(key, e.data["contact_id"], e.data)[0], e.recorded_at, e.version)
        for e in events
    )


CONFLICT = (WrongExpectedVersion, DuplicateEventId)
