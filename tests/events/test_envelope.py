"""The typed envelope consumers decode published events into; no database needed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from crm.contacts.v1 import events_pb2 as contacts_events
from shared.events.envelope import (
    EventDecodeError,
    Published,
    UnknownEventType,
    decode,
    decode_as,
    message_class,
)
from shared.eventstore import RecordedEvent
from tests.events.sample_messages import SAMPLED

AT = datetime(2026, 12, 2, 19, 59, 37, 123456, tzinfo=UTC)
GRANTED = "crm.contacts.v1.ConsentGranted"


def recorded(type_: str, data: dict[str, Any], metadata: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(uuid.uuid4(), "consent-c1", 0, type_, data, metadata, AT, 7 << 20)


def granted(**more: Any) -> dict[str, Any]:
    return {"contact_id": "c1", "channel": "email", "legal_basis": "consent", **more}


def test_an_envelope_carries_the_stored_event_and_its_message() -> None:
    meta = {"actor": "a", "correlation_id": "corr-1", "causation_id": "cause-1", "schema": 1}
    e = recorded(GRANTED, granted(occur_time="2026-12-02T19:59:37.123456Z"), meta)
    p = decode_as(e, contacts_events.ConsentGranted)
    assert isinstance(p, Published)
    assert (p.event_id, p.type, p.stream, p.version, p.position, p.recorded_at) == (
        e.event_id,
        GRANTED,
        "consent-c1",
        0,
        7 << 20,
        AT,
    )
    assert (p.causation_id, p.correlation_id, dict(p.metadata)) == ("cause-1", "corr-1", meta)
    assert p.message.occur_time.ToDatetime(tzinfo=UTC) == AT
    assert (p.message.contact_id, p.message.channel) == ("c1", "email")


def test_causation_and_correlation_are_empty_when_the_metadata_lacks_them() -> None:
    p = decode(recorded(GRANTED, granted(), {"actor": "a", "correlation_id": None}))
    assert (p.causation_id, p.correlation_id) == ("", "")
    with pytest.raises(TypeError):
        p.metadata["actor"] = "someone else"  # type: ignore[index]


def test_an_event_stored_before_a_rename_decodes_as_one_stored_after() -> None:
    old = decode(recorded(SAMPLED, {"happened_at": "2026-12-02T20:59:37.123456+01:00"}, {}))
    new = decode(recorded(SAMPLED, {"happen_time": "2026-12-02T19:59:37.123456Z"}, {}))
    assert old.message == new.message
    assert old.message.DESCRIPTOR.full_name == SAMPLED


def test_decode_finds_the_class_by_type_name_in_the_default_pool() -> None:
    assert message_class(GRANTED) is contacts_events.ConsentGranted
    e = recorded("crm.contacts.v1.ContactArchived", {"contact_id": "c1", "reason": "r"}, {})
    assert decode(e).message == contacts_events.ContactArchived(contact_id="c1", reason="r")


def test_an_unknown_type_is_a_clear_error() -> None:
    for type_ in ("crm.contacts.v1.NoSuchEvent", "orders.inbox.DeliveryKept", "Sample", ""):
        with pytest.raises(UnknownEventType, match="no published message"):
            decode(recorded(type_, {}, {}))


def test_decoding_is_strict_and_checks_the_type_asked_for() -> None:
    with pytest.raises(EventDecodeError, match="consent-c1 v0"):
        decode(recorded(GRANTED, granted(surprise=1), {}))
    with pytest.raises(EventDecodeError, match="does not decode"):
        decode(recorded(GRANTED, granted(occur_time="yesterday"), {}))
    with pytest.raises(EventDecodeError, match=r"not a crm\.contacts\.v1\.ConsentWithdrawn"):
        decode_as(recorded(GRANTED, granted(), {}), contacts_events.ConsentWithdrawn)
