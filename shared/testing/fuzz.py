"""Property-based API tests from protobuf descriptors: hypothesis strategies that build any
request message (empty, huge and odd unicode strings, integers at their type's extremes,
unknown enum numbers, nested messages, lists of thousands of items, Timestamps with bad nanos
or seconds), and the checks every answer must pass: a status the service's canvas documents,
never INTERNAL or UNKNOWN, exactly one ErrorInfo of the service's domain.

Nothing here names a service: a service's test gives its descriptors, its canvas and some
plausible values (ids that exist, valid codes) so that calls get past the first checks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

Samples = Mapping[str, Sequence[str]]  # field name -> plausible values (ids that exist, …)
EMPTY: Samples = {}
MAX_DEPTH = 3
STREAMED = 1  # messages read of a server-streaming answer (a tail sends one at once)
MAX_REQUEST_BYTES = 3 * 1024 * 1024  # well inside gRPC's default 4 MB message limit
NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
_F = FieldDescriptor
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}
_INTERESTING_INTS = (0, 1, -1, 2, 100, 1001, 10**6, 10**6 + 1, 10**15, 10**15 + 1, 5 * 10**18)
_ODD_TEXT = ("", " ", "\x00", "a\x00b", "\t\n", "é", "😀" * 3, "../..", "' OR 1=1 --", "NaN")
_NOW = int(time.time())  # fixed per run: hypothesis needs strategies that do not drift
_SECONDS = (
    0,
    -62_135_596_800,
    -62_135_596_801,
    253_402_300_799,
    253_402_300_800,
    2**62,
    -(2**62),
    _NOW,
    _NOW + 86_400 * 400,
)


# --- requests -----------------------------------------------------------------------------------


def methods(*services: ServiceDescriptor) -> list[MethodDescriptor]:
    """Every method of ``services`` (for pytest.mark.parametrize)."""
    return [m for s in services for m in s.methods]


def message_class(desc: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(desc)


def strings(samples: Sequence[str] = (), wild: bool = True) -> st.SearchStrategy[str]:
    """Plausible values and short text; when ``wild`` also odd unicode, control characters,
    sizes around limits and megabytes."""
    tame = [st.just(""), st.text(st.characters(codec="utf-8", min_codepoint=32), max_size=24)]
    if samples:
        tame = [st.sampled_from(list(samples))] * 6 + tame
    if not wild:
        return st.one_of(tame)
    return st.one_of(
        *tame,
        st.sampled_from(_ODD_TEXT),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=24),
        st.integers(30, 600).map(lambda n: "a" * n),
        st.sampled_from([1025, 4097, 20_000, 1_000_000]).map(lambda n: "x" * n),
    )


def integers(lo: int, hi: int, wild: bool = True) -> st.SearchStrategy[int]:
    edges = sorted({v for v in (*_INTERESTING_INTS, lo, hi, lo + 1, hi - 1) if lo <= v <= hi})
    small = st.integers(max(lo, 0), min(hi, 5))
    if not wild:
        return st.one_of(small, small, st.sampled_from(edges))
    return st.one_of(small, st.sampled_from(edges), st.integers(lo, hi), st.integers(0, 1000))


def timestamps(cls: type[Message], wild: bool = True) -> st.SearchStrategy[Message]:
    seconds = st.integers(_NOW - 86_400 * 3650, _NOW)
    nanos = st.integers(0, 999_999_999)
    if wild:
        seconds = st.one_of(seconds, st.sampled_from(_SECONDS), st.integers(-(2**63), 2**63 - 1))
        nanos = st.one_of(nanos, st.sampled_from([-1, 10**9]), st.integers(-(2**31), 2**31 - 1))
    # A Timestamp-shaped class: its fields by keyword (the stubs type only Message's __init__).
    make = cast(Any, cls)
    return st.builds(lambda s, n: make(seconds=s, nanos=n), seconds, nanos)


def scalars(fd: FieldDescriptor, samples: Samples, wild: bool) -> st.SearchStrategy[Any]:
    if fd.type == _F.TYPE_STRING:
        return strings(samples.get(fd.name, ()), wild)
    if fd.type == _F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=32), st.just(b"\x00" * (200_000 if wild else 100)))
    if fd.type == _F.TYPE_BOOL:
        return st.booleans()
    if fd.type in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return st.floats(width=64 if fd.type == _F.TYPE_DOUBLE else 32)
    if fd.type == _F.TYPE_ENUM:
        enum: Any = fd.enum_type
        known = sorted(enum.values_by_number)
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    lo, hi = _INT_RANGES[fd.type]
    return integers(lo, hi, wild)


def values(fd: FieldDescriptor, samples: Samples, depth: int, wild: bool) -> st.SearchStrategy[Any]:
    """One value of field ``fd`` (one item, for a repeated field)."""
    if fd.type == _F.TYPE_MESSAGE:
        return messages(fd.message_type, samples, depth + 1, wild)  # type: ignore[arg-type]
    return scalars(fd, samples, wild)


def messages(
    desc: Descriptor, samples: Samples = EMPTY, depth: int = 0, wild: bool = True
) -> st.SearchStrategy[Message]:
    """Any message of type ``desc``: each field set or not, nesting up to MAX_DEPTH; when
    ``wild``, also huge and odd values and lists of thousands of items."""
    cls = message_class(desc)
    if desc.full_name == "google.protobuf.Timestamp":
        return timestamps(cls, wild)
    if depth > MAX_DEPTH:
        return st.just(cls())

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        for fd in desc.fields:
            if draw(st.integers(0, 9)) >= (5 if wild else 8):
                continue  # unset
            _set(draw, msg, fd, samples, depth, wild)
        return msg

    return build()


def _set(
    draw: st.DrawFn,
    msg: Message,
    fd: FieldDescriptor,
    samples: Samples,
    depth: int,
    wild: bool,
) -> None:
    target: Any = getattr(msg, fd.name)
    entry: Any = fd.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key_fd, value_fd = entry.fields_by_name["key"], entry.fields_by_name["value"]
        many = wild and draw(st.integers(0, 9)) == 0
        n = draw(st.integers(1001, 2000)) if many else draw(st.integers(0, 3))
        keys = (
            [f"k{i}" for i in range(n)]
            if many
            else draw(st.lists(scalars(key_fd, samples, wild), max_size=n))
        )
        for k in keys:
            value = draw(values(value_fd, samples, depth, False))
            if value_fd.type == _F.TYPE_MESSAGE:
                target[k].CopyFrom(value)
            else:
                target[k] = value
    elif fd.is_repeated:
        many = wild and draw(st.integers(0, 9)) == 0
        if many:  # thousands of copies of one small item
            items = [draw(values(fd, samples, depth, False))] * draw(st.integers(1001, 12_000))
        else:
            items = draw(st.lists(values(fd, samples, depth, wild), max_size=3))
        target.extend(items)
    elif fd.type == _F.TYPE_MESSAGE:
        target.CopyFrom(draw(values(fd, samples, depth, wild)))
    else:
        setattr(msg, fd.name, draw(values(fd, samples, depth, wild)))


def requests(method: MethodDescriptor, samples: Samples = EMPTY) -> st.SearchStrategy[Any]:
    """A request for ``method``: one message, or a list of 1..3 for a client stream; tame
    (plausible values) or wild (anything) by a coin toss. Requests beyond MAX_REQUEST_BYTES are
    not drawn (the transport refuses those before any code)."""
    one = (
        st.booleans()
        .flatmap(lambda wild: messages(method.input_type, samples, wild=wild))
        .filter(lambda m: m.ByteSize() < MAX_REQUEST_BYTES)
    )
    if method.client_streaming:
        return st.lists(one, min_size=1, max_size=3).filter(
            lambda ms: sum(m.ByteSize() for m in ms) < MAX_REQUEST_BYTES
        )
    return one


async def invoke(stub: Any, method: MethodDescriptor, request: Any) -> grpc.aio.AioRpcError | None:
    """Call ``method`` through its stub; the error, or None when it answered OK."""
    call = getattr(stub, method.name)
    try:
        if method.client_streaming:
            await call(iter(request))
        elif method.server_streaming:  # its first messages (a tail never ends by itself)
            answers = call(request)
            seen = 0
            async for _ in answers:
                seen += 1
                if seen >= STREAMED:
                    answers.cancel()
                    break
        else:
            await call(request)
    except grpc.aio.AioRpcError as error:
        return error
    return None


# --- what the canvas documents --------------------------------------------------------------


_REASON = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*\b")
_NAME = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]*)+\b")
COMMON_MARK = "Any RPC may also answer"


@dataclass(frozen=True)
class Canvas:
    """The ErrorInfo reasons a service's canvas (README.md) documents: per RPC (the last
    column of each table whose first header is "RPC"), and for every RPC (the paragraph that
    starts with COMMON_MARK)."""

    rpcs: dict[str, frozenset[str]]
    common: frozenset[str]

    @classmethod
    def parse(cls, path: Path) -> Canvas:
        rpcs: dict[str, frozenset[str]] = {}
        common: set[str] = set()
        in_table = in_common = False
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|"):
                if cells[0] == "RPC":
                    in_table = True
                elif in_table and not set(cells[0]) <= set("-: "):
                    reasons = frozenset(_REASON.findall(cells[-1]))
                    for name in _NAME.findall(cells[0]):
                        rpcs[name] = rpcs.get(name, frozenset()) | reasons
                continue
            in_table = False
            if line.startswith(COMMON_MARK):
                in_common, line = True, line.removeprefix(COMMON_MARK)
            in_common = in_common and line.strip() != ""
            if in_common:
                common |= set(_REASON.findall(line))
        return cls(rpcs, frozenset(common))

    def allowed(self, rpc: str) -> frozenset[str]:
        assert rpc in self.rpcs, f"the canvas has no row for {rpc}"
        return self.rpcs[rpc] | self.common


def error_infos(error: grpc.aio.AioRpcError) -> list[error_details_pb2.ErrorInfo]:
    status = rpc_status.from_call(error)
    assert status is not None, f"{error.code().name} without status details: {error.details()}"
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    return infos


def check_answer(
    error: grpc.aio.AioRpcError | None, rpc: str, canvas: Canvas, domain: str
) -> str | None:
    """The ErrorInfo reason of a failed call (None for OK), once it passed every check."""
    if error is None:
        return None
    assert error.code() not in NEVER, f"{rpc}: {error.code().name}: {error.details()}"
    infos = error_infos(error)
    assert len(infos) == 1, f"{rpc}: {len(infos)} ErrorInfo details: {error.details()}"
    info = infos[0]
    assert info.domain == domain, f"{rpc}: ErrorInfo domain {info.domain!r}"
    assert info.reason in canvas.allowed(rpc), (
        f"{rpc}: reason {info.reason} ({error.code().name}: {error.details()[:200]}) is not "
        "in the canvas"
    )
    return str(info.reason)


# Hypothesis settings for the request fuzz tests: a real server behind each example.
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


async def assert_answers_as_documented(
    stub: Any,
    method: MethodDescriptor,
    request: Any,
    event_count: Callable[[], Awaitable[int]],
    canvas: Canvas,
    domain: str,
) -> None:
    """Call ``method``: OK, or a documented error that appended nothing. (A client stream is
    applied message by message: a failure on a later message may leave earlier ones applied,
    so only a stream of one message must append nothing when it fails.)"""
    before = await event_count()
    error = await invoke(stub, method, request)
    event(check_answer(error, method.name, canvas, domain) or "OK")
    one_unit = not method.client_streaming or len(request) <= 1
    if error is not None and one_unit:
        assert await event_count() == before, f"{method.name} failed but appended events"
