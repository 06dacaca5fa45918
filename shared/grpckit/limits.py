"""Request limits, checked generically from the request's protobuf descriptor before anything
else an RPC does: every string and bytes field has a maximum length, every repeated field and
map a maximum number of items, every enum field a known number, every Timestamp a valid value
(0 <= nanos < 10^9, years 0001..9999), and no string holds U+0000 (PostgreSQL text cannot).

A service states its limits once (``Limits``) and decorates its servicer class with
``enforced``; a new service gets the same checks for every RPC, streaming ones included.
Violations name the field path and the limit, never the value, so an error stays small
whatever the input.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from shared.grpckit import errors as ge

MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_REPORTED = 10  # violations listed in one error

IDENTIFIER = 128
FREE_TEXT = 4096
ITEMS = 1000

# Platform defaults, by field name; a service's own table is laid over these.
DEFAULT_FIELDS: Mapping[str, int] = {
    "request_id": IDENTIFIER,
    "etag": 32,
    "page_token": 1024,
}
DEFAULT_REASONS: Mapping[str, str] = {"request_id": "INVALID_REQUEST_ID"}


@dataclass(frozen=True)
class Limits:
    """``fields`` maps a field name, or a dotted path without indices ("items.sku"), to the
    maximum length of its strings or bytes; the same key plus "[]" ("items[]") to the maximum
    number of items of a repeated field or map. Names ending in ``_id`` default to
    ``identifier``, other strings to ``text``, repeated fields and maps to ``items``.
    ``reasons`` maps the same keys to the ErrorInfo reason of their violations (defaults:
    FIELD_TOO_LONG, TOO_MANY_ITEMS, INVALID_CHARACTER, INVALID_<FIELD> for enums and
    Timestamps)."""

    fields: Mapping[str, int] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)
    identifier: int = IDENTIFIER
    text: int = FREE_TEXT
    items: int = ITEMS
    map_key: int = IDENTIFIER

    def _lookup(self, table: Mapping[str, Any], path: str, name: str) -> Any:
        for key in (path, name):
            if key in table:
                return table[key]
        return None

    def length(self, path: str, name: str) -> int:
        found = self._lookup({**DEFAULT_FIELDS, **self.fields}, path, name)
        if found is not None:
            return int(found)
        return self.identifier if name.endswith("_id") else self.text

    def count(self, path: str, name: str) -> int:
        found = self._lookup(self.fields, path + "[]", name + "[]")
        return self.items if found is None else int(found)

    def reason(self, path: str, name: str, default: str) -> str:
        found = self._lookup({**DEFAULT_REASONS, **self.reasons}, path, name)
        return default if found is None else str(found)


Violation = tuple[str, str, str]  # (field path, reason, description)


def violations(msg: Message, limits: Limits) -> list[Violation]:
    """Every limit ``msg`` breaks (at most MAX_REPORTED), in field order."""
    out: list[Violation] = []
    for v in _walk(msg, limits, "", ""):
        out.append(v)
        if len(out) >= MAX_REPORTED:
            break
    return out


def check(domain: str, msg: Message, limits: Limits) -> None:
    """Raise INVALID_ARGUMENT naming every broken limit (the first one gives the reason)."""
    found = violations(msg, limits)
    if found:
        path, reason, desc = found[0]
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise ge.InvalidArgument(
            reason,
            f"{path}: {desc}{more}",
            domain=domain,
            violations=[(p, d) for p, _, d in found],
        )


def _walk(msg: Message, limits: Limits, prefix: str, dotted: str) -> Iterator[Violation]:
    for fd, value in msg.ListFields():
        path = f"{prefix}{fd.name}"
        key = f"{dotted}{fd.name}"
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            yield from _map(fd, value, limits, path, key)
        elif fd.is_repeated:
            most = limits.count(key, fd.name)
            if len(value) > most:
                reason = limits.reason(key + "[]", fd.name + "[]", "TOO_MANY_ITEMS")
                yield path, reason, f"at most {most} items (got {len(value)})"
                continue
            for i, item in enumerate(value):
                yield from _value(fd, item, limits, f"{path}[{i}]", key)
        else:
            yield from _value(fd, value, limits, path, key)


def _map(
    fd: FieldDescriptor, value: Any, limits: Limits, path: str, key: str
) -> Iterator[Violation]:
    most = limits.count(key, fd.name)
    if len(value) > most:
        reason = limits.reason(key + "[]", fd.name + "[]", "TOO_MANY_ITEMS")
        yield path, reason, f"at most {most} entries (got {len(value)})"
        return
    entry_type: Any = fd.message_type
    value_fd = entry_type.fields_by_name["value"]
    for i, (k, v) in enumerate(value.items()):
        entry = f"{path}[{i}]"
        if isinstance(k, str):
            yield from _text(k, limits.map_key, limits, f"{entry}.key", key, fd.name)
        yield from _value(value_fd, v, limits, entry, key)


def _value(
    fd: FieldDescriptor, value: Any, limits: Limits, path: str, key: str
) -> Iterator[Violation]:
    if fd.type == FieldDescriptor.TYPE_STRING:
        yield from _text(value, limits.length(key, fd.name), limits, path, key, fd.name)
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        most = limits.length(key, fd.name)
        if len(value) > most:
            reason = limits.reason(key, fd.name, "FIELD_TOO_LONG")
            yield path, reason, f"at most {most} bytes (got {len(value)})"
    elif fd.type == FieldDescriptor.TYPE_ENUM:
        enum: Any = fd.enum_type
        if enum.values_by_number.get(value) is None:
            reason = limits.reason(key, fd.name, f"INVALID_{fd.name.upper()}")
            yield path, reason, f"{value} is not a {enum.name} value"
    elif fd.type == FieldDescriptor.TYPE_MESSAGE:
        message_type: Any = fd.message_type
        if message_type.full_name == "google.protobuf.Timestamp":
            yield from _timestamp(value, limits, path, key, fd.name)
        else:
            yield from _walk(value, limits, f"{path}.", f"{key}.")


def _text(
    value: str, most: int, limits: Limits, path: str, key: str, name: str
) -> Iterator[Violation]:
    if len(value) > most:
        reason = limits.reason(key, name, "FIELD_TOO_LONG")
        yield path, reason, f"at most {most} characters (got {len(value)})"
    elif "\x00" in value:
        reason = limits.reason(key, name, "INVALID_CHARACTER")
        yield path, reason, "must not contain U+0000"


def _timestamp(ts: Any, limits: Limits, path: str, key: str, name: str) -> Iterator[Violation]:
    if not 0 <= ts.nanos < 1_000_000_000 or not MIN_SECONDS <= ts.seconds <= MAX_SECONDS:
        reason = limits.reason(key, name, f"INVALID_{name.upper()}")
        yield path, reason, "a timestamp in 0001..9999 with 0 <= nanos < 10^9"


# --- applying them to a servicer ----------------------------------------------------------------


def enforced(domain: str, limits: Limits, *services: ServiceDescriptor) -> Callable[[type], type]:
    """Class decorator: every RPC of ``services`` implemented by the class checks its request
    (each message of a client stream) against ``limits`` before its own code runs."""

    def decorate(cls: type) -> type:
        for service in services:
            for method in service.methods:
                behavior = getattr(cls, method.name, None)
                if behavior is None:
                    continue
                if method.client_streaming:
                    wrap = _streaming
                elif method.server_streaming:
                    wrap = _server_streaming
                else:
                    wrap = _unary
                setattr(cls, method.name, wrap(behavior, domain, limits))
        return cls

    return decorate


def _unary(behavior: Callable[..., Any], domain: str, limits: Limits) -> Callable[..., Any]:
    @functools.wraps(behavior)
    async def checked(self: Any, request: Message, context: Any) -> Any:
        check(domain, request, limits)
        return await behavior(self, request, context)

    return checked


def _streaming(behavior: Callable[..., Any], domain: str, limits: Limits) -> Callable[..., Any]:
    @functools.wraps(behavior)
    async def checked(self: Any, requests: AsyncIterator[Message], context: Any) -> Any:
        async def each() -> AsyncIterator[Message]:
            async for request in requests:
                check(domain, request, limits)
                yield request

        return await behavior(self, each(), context)

    return checked


def _server_streaming(
    behavior: Callable[..., Any], domain: str, limits: Limits
) -> Callable[..., Any]:
    @functools.wraps(behavior)
    async def checked(self: Any, request: Message, context: Any) -> AsyncIterator[Any]:
        check(domain, request, limits)
        async for message in behavior(self, request, context):
            yield message

    return checked
