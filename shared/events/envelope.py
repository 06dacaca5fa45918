"""The typed envelope for consuming published events: a stored event, upcast (upcast.py) and
decoded into its message from the published protos (``crm.<context>.v1.events_pb2``).

A consumer imports the publishing service's ``events_pb2`` module (never its package) and
decodes what it reads from the store::

    from crm.orders.v1 import events_pb2

    placed = decode_as(event, events_pb2.OrderPlaced)  # Published[events_pb2.OrderPlaced]
    placed.message.place_time.ToDatetime(), placed.correlation_id

``decode`` finds the message class by the event's type in the default descriptor pool; decoding
is strict (an unknown field or a wrong type is an error), so what decodes is what the proto says.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from shared.events.upcast import upcast
from shared.eventstore import RecordedEvent

M = TypeVar("M", bound=Message)


class EventDecodeError(ValueError):
    """The stored event does not decode as the published message its type names."""


class UnknownEventType(EventDecodeError):
    """The event's type names no message in the default descriptor pool: not a published event,
    or its ``events_pb2`` module was not imported."""


@dataclass(frozen=True, slots=True)
class Published(Generic[M]):
    """A published event as a consumer sees it: where and when it was stored, the ids that tie
    it to what caused it, and its message."""

    event_id: uuid.UUID
    type: str  # the message's full name, e.g. "crm.orders.v1.OrderPlaced"
    stream: str
    version: int
    position: int
    recorded_at: datetime
    causation_id: str  # metadata "causation_id", "" when absent
    correlation_id: str  # metadata "correlation_id", "" when absent
    metadata: Mapping[str, Any]  # read-only
    message: M


_CLASSES: dict[str, type[Message]] = {}


def message_class(type_: str) -> type[Message]:
    """The generated class of the published message named ``type_``."""
    cls = _CLASSES.get(type_)
    if cls is None:
        try:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(type_)
        except (KeyError, TypeError):
            raise UnknownEventType(
                f"no published message {type_!r} (is its events_pb2 module imported?)"
            ) from None
        cls = _CLASSES[type_] = message_factory.GetMessageClass(descriptor)
    return cls


def decode(event: RecordedEvent) -> Published[Message]:
    """``event`` upcast and decoded as the message its type names."""
    return _decode(event, message_class(event.type))


def decode_as(event: RecordedEvent, cls: type[M]) -> Published[M]:
    """``event`` decoded as ``cls``, which its type must name."""
    if event.type != cls.DESCRIPTOR.full_name:
        raise EventDecodeError(
            f"{event.stream} v{event.version} is a {event.type}, not a {cls.DESCRIPTOR.full_name}"
        )
    return _decode(event, cls)


def _decode(event: RecordedEvent, cls: type[M]) -> Published[M]:
    data = upcast(event).data
    try:
        message = json_format.ParseDict(data, cls(), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise EventDecodeError(
            f"{event.stream} v{event.version} ({event.type}) does not decode: {exc}"
        ) from exc
    meta = event.metadata
    return Published(
        event_id=event.event_id,
        type=event.type,
        stream=event.stream,
        version=event.version,
        position=event.position,
        recorded_at=event.recorded_at,
        causation_id=str(meta.get("causation_id") or ""),
        correlation_id=str(meta.get("correlation_id") or ""),
        metadata=MappingProxyType(meta),
        message=message,
    )
