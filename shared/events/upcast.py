"""The upcaster: a stored event in the current shape of its published message.

Stored events are never rewritten (the store is append-only and hash-chained), so when a
published field is renamed its message says so: ``[(crm.options.v1.stored_as) = "<old key>"]``.
``upcast`` reads those options from the descriptors and, in a copy of the event's data, moves
each old key to the field's own name when the field itself is absent (and drops it otherwise),
converting the old value to what the field's type accepts: a Timestamp's old text becomes the
RFC 3339 UTC text new events are written with (shared/domain/timestamps.py). It does the same
inside nested messages, repeated messages and map values.

The event's type is its message's full name (``crm.orders.v1.OrderPlaced``), looked up in the
default descriptor pool: whoever reads a service's events must have imported its ``events_pb2``
module. What each message type needs is worked out once; an event of a type with no renamed
field anywhere in it costs a dict lookup and comes back as the same object. A type the pool
does not know is passed through unchanged (and looked up again next time, so a module imported
later still counts).

Readers apply it wherever stored events are read for meaning: a service's command-side fold,
the projection runner (so every projection, reactor and rebuild), and ``envelope.decode``. The
event store never does: ``verify()`` hashes the bytes as stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor

from crm.options.v1 import options_pb2
from shared.domain.timestamps import timestamp_from_text, timestamp_text
from shared.eventstore import RecordedEvent

_ABSENT: Any = object()  # what a converter returns for an old value that means "not set"


def _timestamp(value: Any) -> Any:
    """An old time (ISO 8601 text with an offset) as a Timestamp's JSON text; "" (a string
    field's unset value) as absent; anything else unchanged, for the decoder to refuse."""
    if value == "":
        return _ABSENT
    if not isinstance(value, str):
        return value
    try:
        return timestamp_text(timestamp_from_text(value))
    except ValueError:
        return value


# How an old value becomes one the renamed field's type accepts, by the field's message type.
_CONVERTERS: dict[str, Callable[[Any], Any]] = {"google.protobuf.Timestamp": _timestamp}


@dataclass(frozen=True, slots=True)
class _Rename:
    name: str  # the key new events are stored under (the field's name)
    json_name: str  # the lowerCamelCase key, which the JSON mapping accepts too
    old: tuple[str, ...]
    convert: Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Nested:
    keys: tuple[str, ...]  # the field's name, and its JSON name if different
    shape: str  # "message", "repeated" or "map" (of message values)
    plan: _Plan


@dataclass(slots=True)
class _Plan:
    renames: tuple[_Rename, ...]
    nested: list[_Nested] = field(default_factory=list)


# Per message full name: its plan, or None when nothing in it was ever renamed.
_PLANS: dict[str, _Plan | None] = {}


def upcast(event: RecordedEvent) -> RecordedEvent:
    """``event`` with its data in the current shape of its message (the same object when there
    is nothing to change). Never mutates ``event`` or its data."""
    plan = _PLANS.get(event.type, _ABSENT)
    if plan is _ABSENT:
        plan = _plan_of_type(event.type)
    if plan is None:
        return event
    data = _apply(plan, event.data)
    return event if data is event.data else event._replace(data=data)


def upcast_all(events: Iterable[RecordedEvent]) -> list[RecordedEvent]:
    return [upcast(e) for e in events]


def _plan_of_type(type_: str) -> _Plan | None:
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_)
    except (KeyError, TypeError):
        return None  # not a published message (or its module is not imported): not cached
    return _plan(descriptor)


def _renames(message: Descriptor) -> tuple[_Rename, ...]:
    out = []
    for f in message.fields:
        if not f.has_options:
            continue
        old = tuple(f.GetOptions().Extensions[options_pb2.stored_as])
        if old:
            kind = f.message_type.full_name if f.message_type is not None else ""
            out.append(_Rename(f.name, f.json_name, old, _CONVERTERS.get(kind)))
    return tuple(out)


def _reaches_a_rename(message: Descriptor) -> bool:
    seen: set[str] = set()
    todo = [message]
    while todo:
        m = todo.pop()
        if m.full_name in seen:
            continue
        seen.add(m.full_name)
        if _renames(m):
            return True
        todo.extend(f.message_type for f in m.fields if f.message_type is not None)
    return False


def _plan(message: Descriptor) -> _Plan | None:
    if message.full_name in _PLANS:
        return _PLANS[message.full_name]
    if not _reaches_a_rename(message):
        _PLANS[message.full_name] = None
        return None
    plan = _Plan(_renames(message))
    _PLANS[message.full_name] = plan  # before the fields: a recursive message finds itself
    for f in message.fields:
        if f.message_type is None:
            continue
        keys = tuple(dict.fromkeys((f.name, f.json_name)))
        if f.message_type.GetOptions().map_entry:
            value = f.message_type.fields_by_name["value"]
            inner = _plan(value.message_type) if value.message_type is not None else None
            shape = "map"
        else:
            inner = _plan(f.message_type)
            shape = "repeated" if f.is_repeated else "message"
        if inner is not None:
            plan.nested.append(_Nested(keys, shape, inner))
    return plan


def _apply(plan: _Plan, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` upcast by ``plan``: a new dict if anything changed, else ``data`` itself."""
    out = data
    for r in plan.renames:
        for old in r.old:
            if old not in out:
                continue
            if out is data:
                out = dict(data)
            value = out.pop(old)
            if r.name in out or r.json_name in out:
                continue  # the field itself is there: it wins
            if r.convert is not None:
                value = r.convert(value)
            if value is not _ABSENT:
                out[r.name] = value
    for n in plan.nested:
        for key in n.keys:
            value = out.get(key)
            new = _apply_nested(n, value) if value is not None else value
            if new is not value:
                if out is data:
                    out = dict(data)
                out[key] = new
    return out


def _apply_nested(n: _Nested, value: Any) -> Any:
    if n.shape == "message":
        return _apply(n.plan, value) if isinstance(value, dict) else value
    if n.shape == "repeated" and isinstance(value, list):
        items = [_apply(n.plan, v) if isinstance(v, dict) else v for v in value]
        changed = any(a is not b for a, b in zip(items, value, strict=True))
        return items if changed else value
    if n.shape == "map" and isinstance(value, dict):
        entries = {k: _apply(n.plan, v) if isinstance(v, dict) else v for k, v in value.items()}
        changed = any(entries[k] is not v for k, v in value.items())
        return entries if changed else value
    return value
