"""Unit tests of the EventStoreDB adapter without a server (none can run on these machines).

Two layers: the pure mapping pieces of shared/eventstore/esdb.py on SimpleNamespace fakes shaped
like eventstoredb's RecordedEvent, and the store's orchestration (tail reads, retries, idempotency
read-back, paging, subscriptions) on an in-memory fake of ``eventstoredb.Client`` that mimics the
server behaviour the adapter relies on. The fake is only as faithful as its comments say: the
real contract suite runs against a server when EVENTSTORE_URL is set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import orjson
import pytest

from shared.eventstore import hashing
from shared.eventstore.esdb import (
    EventStoreDBStore,
    _chain,
    _ChainChecker,
    _check_url,
    _Filter,
    _lib,
    _match_existing,
    _plan,
    _split_hash,
    _to_recorded,
    _wire,
    category_regex,
    type_regex,
)
from shared.eventstore.model import (
    DuplicateEventId,
    NewEvent,
    StreamAppend,
    StreamState,
    WrongExpectedVersion,
)
from shared.eventstore.port import Direction

esdb = pytest.importorskip(
    "eventstoredb",
    reason="eventstoredb 0.9 is not installed (it needs Python < 3.13, setuptools < 81)",
)
esdb_events = pytest.importorskip("eventstoredb.events")
esdb_filters = pytest.importorskip("eventstoredb.filters")
esdb_options = pytest.importorskip("eventstoredb.options")

AT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def new(n: int, type_: str = "test.v1.Tested", **meta: Any) -> NewEvent:
    return NewEvent(type=type_, data={"n": n}, metadata={"actor": "unit", **meta})


def recorded(
    stream: str,
    revision: int,
    position: int,
    type_: str = "test.v1.Tested",
    data: bytes | None = b"{}",
    metadata: bytes | None = None,
    event_id: uuid.UUID | None = None,
) -> SimpleNamespace:
    """A fake of eventstoredb.events.RecordedEvent (same attribute names)."""
    return SimpleNamespace(
        stream_name=stream,
        id=event_id or uuid.uuid4(),
        type=type_,
        content_type="application/json",
        revision=revision,
        created=17_000_000_000_000_000,
        position=SimpleNamespace(commit_position=position, prepare_position=position),
        data=data,
        metadata=metadata,
    )


def stored(stream: str, prepared: list[Any], first: int = 0, pos: int = 1000) -> list[Any]:
    return [
        recorded(
            stream, first + i, pos + 10 * i, p.event.type, p.data, p.metadata, p.event.event_id
        )
        for i, p in enumerate(prepared)
    ]


def test_fake_events_have_the_client_event_fields() -> None:
    fields = {f.name for f in dataclasses.fields(esdb_events.RecordedEvent)}
    assert set(vars(recorded("s", 0, 1))) == fields


def test_module_imports_without_loading_the_client() -> None:
    code = "import sys, shared.eventstore.esdb; print('eventstoredb' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "False"


# --- connection ----------------------------------------------------------------------------------


async def test_connect_builds_a_client_without_io() -> None:
    store = await EventStoreDBStore.connect("esdb://127.0.0.1:1?Tls=false")
    client = store._client
    assert isinstance(client, esdb.Client)
    assert (client._options.host, client._options.port) == ("127.0.0.1", 1)
    assert client._channel is None  # nothing opened yet: port 1 would refuse
    await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "esdb://localhost:2113",  # TLS by default: the client cannot do it
        "esdb://localhost:2113?Tls=true",
        "esdb://admin:changeit@localhost:2113?tls=false",  # credentials would be dropped
        "esdb+discover://localhost:2113?tls=false",
        "http://localhost:2113?tls=false",
    ],
)
def test_connect_refuses_what_the_client_cannot_do(url: str) -> None:
    with pytest.raises(ValueError):
        _check_url(url)


def test_stamps_strictly_increase() -> None:
    # _confirm relies on two attempts at one batch never writing equal metadata bytes
    store = EventStoreDBStore(client=None)
    stamps = [store._stamp() for _ in range(2000)]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert stamps[0].tzinfo is UTC


# --- expected versions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "last", "sent"),
    [
        (0, 0, 0),
        (7, 7, 7),
        (StreamState.NO_STREAM, -1, -1),
        (StreamState.ANY, -1, -1),
        (StreamState.ANY, 4, 4),  # ANY sends the exact revision its hashes chain on
        (StreamState.EXISTS, 0, 0),
    ],
)
def test_plan_sends_the_exact_revision(expected: Any, last: int, sent: int) -> None:
    assert _plan("s-1", expected, last) == sent


@pytest.mark.parametrize(
    ("expected", "last"),
    [(0, -1), (0, 1), (5, 2), (StreamState.NO_STREAM, 0), (StreamState.EXISTS, -1)],
)
def test_plan_raises_wrong_expected_version_with_actual(expected: Any, last: int) -> None:
    with pytest.raises(WrongExpectedVersion) as info:
        _plan("s-1", expected, last)
    assert (info.value.stream, info.value.expected, info.value.actual) == ("s-1", expected, last)


def test_plan_rejects_negative_numbers() -> None:
    with pytest.raises(ValueError):
        _plan("s-1", -3, -1)


@pytest.mark.parametrize(
    ("revision", "field"), [(-1, "no_stream"), (0, "revision"), (9, "revision")]
)
def test_wire_maps_to_the_append_header(revision: int, field: str) -> None:
    import betterproto
    from eventstoredb.client.append_to_stream.grpc import create_append_header

    opts = esdb_options.AppendToStreamOptions(expected_revision=_wire(revision))
    header = create_append_header("s-1", opts).options
    assert betterproto.which_one_of(header, "expected_stream_revision")[0] == field
    if field == "revision":
        assert header.revision == revision


# --- filters -------------------------------------------------------------------------------------


def test_category_regex_matches_the_category_only() -> None:
    rx = re.compile(category_regex(["contact", "a.b+c"]))
    for name in ["contact-1", "contact", "contact-1-2", "a.b+c-9", "a.b+c"]:
        assert rx.search(name), name
    for name in ["contacts-1", "xcontact-1", "$ce-contact", "axb+c-1", "a.bbc-1", "deal-1"]:
        assert not rx.search(name), name


def test_type_regex_is_exact_and_escaped() -> None:
    rx = re.compile(type_regex(["crm.contacts.v1.ContactRegistered", "x"]))
    assert rx.search("crm.contacts.v1.ContactRegistered") and rx.search("x")
    for t in ["crmXcontacts.v1.ContactRegistered", "crm.contacts.v1.ContactRegisteredV2", "xy"]:
        assert not rx.search(t), t


def test_empty_filters_match_nothing() -> None:
    assert not re.search(category_regex([]), "contact-1")
    assert not re.search(type_regex([]), "x")


def test_server_filter_objects_reach_the_request() -> None:
    from eventstoredb.client.read_all.grpc import create_read_all_request

    by_cat = _Filter(["contact"], ["T"]).server()
    assert isinstance(by_cat, esdb_filters.StreamNameFilter)
    req = create_read_all_request(esdb_options.ReadAllOptions(filter=by_cat)).options
    assert req.filter.stream_identifier.regex == category_regex(["contact"])
    by_type = _Filter(None, ["T"]).server()
    assert isinstance(by_type, esdb_filters.EventTypeFilter) and by_type.regex == "^(?:T)$"
    assert isinstance(_Filter().server(), esdb_filters.ExcludeSystemEventsFilter)


def test_wanted_applies_both_filters_and_skips_system_events() -> None:
    f = _Filter(["contact"], ["A"])
    assert f.wanted(recorded("contact-1", 0, 1, "A"))
    assert not f.wanted(recorded("contact-1", 0, 1, "B"))
    assert not f.wanted(recorded("deal-1", 0, 1, "A"))
    assert not _Filter().wanted(recorded("contact-1", 0, 1, "$metadata"))


# --- read_all pages ------------------------------------------------------------------------------


def items(*spec: tuple[int, str, str]) -> list[Any]:
    return [recorded(stream, 0, pos, type_) for pos, stream, type_ in spec]


def test_page_drops_the_inclusive_start_and_advances_to_head_when_dry() -> None:
    got = items((10, "c-1", "A"), (20, "c-1", "A"), (30, "$stats", "$statsCollected"))
    page, more = _Filter().page(10, got, 11, 55, 10)
    assert [e.position for e in page.events] == [20]
    assert (page.last_position, more) == (55, False)


def test_full_server_answer_stops_at_the_last_scanned_event() -> None:
    got = items((10, "c-1", "A"), (20, "d-1", "B"), (30, "c-2", "B"))
    page, more = _Filter(["c"], ["A"]).page(0, got, 3, 999, 2)
    assert [e.position for e in page.events] == [10]  # the others were filtered client-side
    assert (page.last_position, more) == (30, True)


def test_page_stops_at_limit() -> None:
    got = items((10, "c-1", "A"), (20, "c-1", "A"), (30, "c-1", "A"))
    page, more = _Filter().page(0, got, 3, 999, 2)
    assert [e.position for e in page.events] == [10, 20]
    assert (page.last_position, more) == (20, True)


def test_empty_read_keeps_after_when_head_is_behind() -> None:
    page, more = _Filter().page(70, [], 11, 50, 10)
    assert (page.events, page.last_position, more) == ([], 70, False)


# --- hash chain ----------------------------------------------------------------------------------


def test_chain_hashes_the_stored_text_and_links_events() -> None:
    e1, e2 = new(1), new(2)
    p = _chain("c-1", [e1, e2], 0, b"", AT)
    meta1 = orjson.loads(p[0].metadata)
    assert meta1 == {"actor": "unit", "$recorded_at": AT.isoformat(), "$hash": meta1["$hash"]}
    text1 = orjson.dumps({"actor": "unit", "$recorded_at": AT.isoformat()}).decode()
    h1 = hashing.event_hash(b"", e1.event_id, "c-1", 0, e1.type, '{"n":1}', text1, AT)
    assert meta1["$hash"] == h1.hex() and p[0].data == b'{"n":1}'
    text2 = orjson.dumps({"actor": "unit", "$recorded_at": AT.isoformat()}).decode()
    h2 = hashing.event_hash(h1, e2.event_id, "c-1", 1, e2.type, '{"n":2}', text2, AT)
    assert orjson.loads(p[1].metadata)["$hash"] == h2.hex()
    assert _split_hash(p[1].metadata) == (text2.encode(), h2)


def test_chain_refuses_reserved_metadata_keys() -> None:
    with pytest.raises(ValueError):
        _chain("c-1", [NewEvent("T", {}, {"$hash": "x"})], 0, b"", AT)


@pytest.mark.parametrize("raw", [None, b"", b"{}", b'{"a":1}', b'{"$hash":"zz"}', b"x" * 200])
def test_split_hash_ignores_events_without_a_hash(raw: bytes | None) -> None:
    assert _split_hash(raw) is None


def test_verify_accepts_an_intact_chain_over_several_appends_and_streams() -> None:
    first = _chain("c-1", [new(1), new(2)], 0, b"", AT)
    second = _chain("c-1", [new(3)], 2, _split_hash(first[-1].metadata)[1], AT)  # type: ignore[index]
    other = _chain("d-1", [new(9)], 0, b"", AT + timedelta(seconds=1))
    log = stored("c-1", first) + stored("d-1", other) + stored("c-1", second, first=2)
    log.insert(1, recorded("$settings", 0, 5, "$metadata"))  # system events are skipped
    checker = _ChainChecker()
    for ev in log:
        checker.feed(ev)
    report = checker.report()
    assert report.ok and (report.streams, report.events) == (2, 4)


@pytest.mark.parametrize("what", ["data", "metadata", "type", "revision", "no_hash", "fork"])
def test_verify_flags_the_tampered_event(what: str) -> None:
    first = _chain("c-1", [new(1), new(2)], 0, b"", AT)
    prev = b"" if what == "fork" else _split_hash(first[-1].metadata)[1]  # type: ignore[index]
    log = stored("c-1", first) + stored("c-1", _chain("c-1", [new(3)], 2, prev, AT), first=2)
    target = log[2] if what == "fork" else log[1]
    # without its hash, the next event cannot be checked either
    expected = (
        [("c-1", 1), ("c-1", 2)]
        if what == "no_hash"
        else [("c-1", 5 if what == "revision" else target.revision)]
    )
    if what == "data":
        target.data = b'{"n":20}'
    elif what == "metadata":
        target.metadata = target.metadata.replace(b'"unit"', b'"evil"')
    elif what == "type":
        target.type = "test.v1.Other"
    elif what == "revision":
        target.revision = 5
    elif what == "no_hash":
        target.metadata = b'{"actor":"unit"}'
    checker = _ChainChecker()
    for ev in log:
        checker.feed(ev)
    assert checker.report().broken == expected


# --- conversion and idempotency ------------------------------------------------------------------


def test_to_recorded_hides_store_keys() -> None:
    e = new(1, correlation_id="c")
    (ev,) = stored("contact-1", _chain("contact-1", [e], 0, b"", AT), pos=4242)
    r = _to_recorded(ev)
    assert (r.event_id, r.stream, r.version, r.type, r.position) == (
        e.event_id,
        "contact-1",
        0,
        e.type,
        4242,
    )
    assert (r.data, r.metadata, r.recorded_at, r.category) == (
        {"n": 1},
        {"actor": "unit", "correlation_id": "c"},
        AT,
        "contact",
    )


def test_to_recorded_of_a_foreign_event() -> None:
    r = _to_recorded(recorded("x-1", 3, 9, data=None, metadata=None))
    assert (r.data, r.metadata) == ({}, {})
    assert r.recorded_at == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=1_700_000_000)
    assert _to_recorded(recorded("x-1", 0, 1, data=b"\x00\x01")).data == {"$raw": "AAE="}
    assert _to_recorded(recorded("x-1", 0, 1, data=b"[1]")).data == {"$value": [1]}


def test_match_existing() -> None:
    e1, e2 = new(1), new(2)
    log = stored("c-1", _chain("c-1", [e1, e2], 0, b"", AT))
    assert _match_existing("c-1", [new(3)], log) is None
    found = _match_existing("c-1", [e1, e2], log)
    assert found is not None and found.idempotent and (found.version, found.position) == (1, 1010)
    with pytest.raises(DuplicateEventId):  # only part of the batch is stored
        _match_existing("c-1", [e1, new(3)], log)
    with pytest.raises(DuplicateEventId):  # same id, other data
        _match_existing("c-1", [NewEvent(e1.type, {"n": 9}, event_id=e1.event_id)], log)
    with pytest.raises(DuplicateEventId):  # same id, other type
        _match_existing("c-1", [NewEvent("other", {"n": 1}, event_id=e1.event_id)], log)


# --- the store on an in-memory fake server -------------------------------------------------------


class FakeServer:
    """Stands in for eventstoredb.Client, with the server behaviour the adapter relies on: one
    commit position per event, $all reads inclusive of their start position, server-side regex
    filters with search semantics, appends re-sent to the same place answered with plain success
    (ESDB's idempotency by id), StreamNotFound while reading a missing stream, nothing read
    backwards from beyond a stream's end, subscriptions exclusive of their start position."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.streams: dict[str, list[Any]] = {}
        self.changed = asyncio.Event()
        self.appends = 0
        self._record("$settings", "$metadata", uuid.uuid4(), b"{}", b"{}")

    def _record(self, stream: str, type_: str, id_: uuid.UUID, data: Any, meta: Any) -> Any:
        events = self.streams.setdefault(stream, [])
        pos = 100 * (len(self.log) + 1)
        ev = esdb_events.JsonRecordedEvent(
            stream_name=stream,
            id=id_,
            type=type_,
            content_type=esdb_events.ContentType.JSON,
            revision=len(events),
            created=17_000_000_000_000_000,
            position=esdb_options.AllPosition(pos, pos),
            data=data,
            metadata=meta,
        )
        events.append(ev)
        self.log.append(ev)
        return ev

    async def append_to_stream(self, stream: str, events: list[Any], options: Any) -> Any:
        await asyncio.sleep(0)
        lib, exp, cur = _lib(), options.expected_revision, self.streams.get(stream, [])
        start = 0 if exp is lib.AppendExpectedRevision.NO_STREAM else exp + 1
        if [e.id for e in cur[start : start + len(events)]] == [e.id for e in events]:
            return SimpleNamespace(next_expected_revision=start + len(events) - 1)
        if exp is lib.AppendExpectedRevision.NO_STREAM and cur:
            raise lib.StreamAlreadyExistsError(stream)
        if isinstance(exp, int) and exp != len(cur) - 1:
            if not cur:
                raise lib.StreamNotFoundError(stream)
            raise lib.RevisionMismatchError(stream, exp, len(cur) - 1)
        self.appends += 1
        last = [self._record(stream, e.type, e.id, e.data, e.metadata) for e in events][-1]
        self.changed.set()
        self.changed = asyncio.Event()
        return SimpleNamespace(next_expected_revision=last.revision, position=last.position)

    async def read_stream(self, stream: str, options: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(0)
        lib = _lib()
        if stream not in self.streams:
            raise lib.StreamNotFoundError(stream)
        cur, rev = self.streams[stream], options.from_revision
        if options.direction is lib.ReadDirection.BACKWARDS:
            end = len(cur) - 1 if rev is lib.StreamPosition.END else rev
            seq = [] if end >= len(cur) else cur[end::-1]
        else:
            seq = cur[0 if rev is lib.StreamPosition.START else rev :]
        for ev in seq[: options.max_count]:
            yield esdb_events.ReadEvent(event=ev)

    @staticmethod
    def _matches(flt: Any, ev: Any) -> bool:
        if flt is None:
            return True
        if isinstance(flt, esdb_filters.ExcludeSystemEventsFilter):
            return not ev.type.startswith("$")
        name = ev.stream_name if isinstance(flt, esdb_filters.StreamNameFilter) else ev.type
        return re.search(flt.regex, name) is not None

    async def read_all(self, options: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(0)
        lib, start, n = _lib(), options.from_position, 0
        if options.direction is lib.ReadDirection.BACKWARDS:
            seq = list(reversed(self.log))
        elif start is lib.StreamPosition.START:
            seq = list(self.log)
        else:
            seq = [e for e in self.log if e.position.commit_position >= start.commit_position]
        for ev in seq:
            if n < options.max_count and self._matches(options.filter, ev):
                n += 1
                yield esdb_events.ReadEvent(event=ev)

    async def subscribe_to_all(self, options: Any) -> AsyncIterator[Any]:
        lib, start, seen = _lib(), options.from_position, 0
        after = 0 if start is lib.StreamPosition.START else start.commit_position
        while True:
            changed = self.changed
            for ev in self.log[seen:]:
                if ev.position.commit_position > after and self._matches(options.filter, ev):
                    yield esdb_events.ReadEvent(event=ev)
            seen = len(self.log)
            yield esdb_events.CaughtUp()
            await changed.wait()


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def store(server: FakeServer) -> EventStoreDBStore:
    return EventStoreDBStore(server)


async def test_append_read_and_positions(store: EventStoreDBStore) -> None:
    r = await store.append("c-1", [new(1), new(2)], StreamState.NO_STREAM)
    assert (r.version, r.idempotent) == (1, False)
    events = await store.read_stream("c-1")
    assert [e.data["n"] for e in events] == [1, 2] and events[1].position == r.position
    assert events[0].metadata == {"actor": "unit"}
    assert [e.version for e in await store.read_stream("c-1", -1, Direction.BACKWARDS, 1)] == [1]
    assert [e.version for e in await store.read_stream("c-1", 9, Direction.BACKWARDS)] == [1, 0]
    assert [e.version for e in await store.read_stream("c-1", 0, Direction.BACKWARDS)] == [0]
    assert [e.version for e in await store.read_stream("c-1", 1)] == [1]
    assert await store.read_stream("c-missing") == []
    assert (await store.stream_version("c-1"), await store.stream_version("nope")) == (1, -1)
    assert await store.head_position() == r.position
    got = await store.get_event(events[0].event_id)
    assert got == events[0] and await store.get_event(uuid.uuid4()) is None


async def test_expected_versions(store: EventStoreDBStore) -> None:
    with pytest.raises(WrongExpectedVersion):
        await store.append("c-1", [new(0)], StreamState.EXISTS)
    with pytest.raises(WrongExpectedVersion):
        await store.append("c-1", [new(0)], 0)
    await store.append("c-1", [new(0)], StreamState.NO_STREAM)
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append("c-1", [new(1)], StreamState.NO_STREAM)
    assert info.value.actual == 0
    assert (await store.append("c-1", [new(1)], 0)).version == 1
    assert (await store.append("c-1", [new(2)], StreamState.ANY)).version == 2
    assert (await store.append("c-1", [new(3)], StreamState.EXISTS)).version == 3
    assert (await store.verify("c-1")).ok


async def test_idempotent_retries(store: EventStoreDBStore, server: FakeServer) -> None:
    batch = [new(1), new(2)]
    await store.append("c-1", batch, StreamState.NO_STREAM)
    again = await store.append("c-1", batch, StreamState.NO_STREAM)
    assert again.idempotent and again.version == 1
    await store.append("c-1", [new(3)], 1)
    retry_any = await store.append("c-1", batch, StreamState.ANY)  # no longer at the tail's end
    assert retry_any.idempotent and retry_any.version == 1
    assert server.appends == 2 and len(await store.read_stream("c-1")) == 3
    clash = NewEvent(batch[0].type, {"n": 5}, event_id=batch[0].event_id)
    with pytest.raises(DuplicateEventId):
        await store.append("c-1", [clash], StreamState.NO_STREAM)


async def test_racing_resends_write_one_copy(store: EventStoreDBStore, server: FakeServer) -> None:
    batch = [new(1), new(2)]
    results = await asyncio.gather(
        *(store.append("c-1", batch, StreamState.NO_STREAM) for _ in range(10))
    )
    assert sum(not r.idempotent for r in results) == 1 and server.appends == 1
    assert {r.version for r in results} == {1}


async def test_racing_writers_one_winner(store: EventStoreDBStore) -> None:
    await store.append("c-1", [new(0)], StreamState.NO_STREAM)

    async def attempt(expected: Any) -> bool:
        try:
            await store.append("c-1", [new(1)], expected)
            return True
        except WrongExpectedVersion:
            return False

    assert sum(await asyncio.gather(*(attempt(0) for _ in range(12)))) == 1
    # ANY re-reads the tail and retries a couple of times: most racing writers get through
    assert sum(await asyncio.gather(*(attempt(StreamState.ANY) for _ in range(3)))) == 3
    assert (await store.verify("c-1")).ok and await store.stream_version("c-1") == 4


async def test_read_all_pages_with_filters(store: EventStoreDBStore) -> None:
    await store.append("c-a", [new(0, "A")], StreamState.NO_STREAM)
    await store.append("d-b", [new(1, "B")], StreamState.NO_STREAM)
    await store.append("c-a", [new(2, "B")], 0)

    async def everything(**filters: Any) -> list[int]:
        out: list[int] = []
        after = 0
        while True:
            page = await store.read_all(after, limit=2, **filters)
            out.extend(e.data["n"] for e in page.events)
            if not page.events and page.last_position == after:
                return out
            after = page.last_position

    assert await everything() == [0, 1, 2]
    assert await everything(categories=["c"]) == [0, 2]
    assert await everything(types=["B"]) == [1, 2]
    assert await everything(categories=["c", "d"], types=["B"]) == [1, 2]
    nothing = await store.read_all(0, categories=["zzz"], limit=10)
    assert nothing.events == [] and nothing.last_position == await store.head_position()


async def test_subscribe_catches_up_then_goes_live(store: EventStoreDBStore) -> None:
    await store.append("c-1", [new(0), new(1)], StreamState.NO_STREAM)
    await store.append("d-1", [new(9)], StreamState.NO_STREAM)
    pages = []

    async def consume() -> None:
        async for page in store.subscribe(
            0, categories=["c"], types=["test.v1.Tested"], batch_size=1
        ):
            pages.append(page)
            if sum(len(p.events) for p in pages) == 4:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await store.append("d-1", [new(8)], 0)
    await store.append("c-2", [new(2, "other.Type"), new(2), new(3)], StreamState.NO_STREAM)
    await asyncio.wait_for(task, 2)
    assert [e.data["n"] for p in pages for e in p.events] == [0, 1, 2, 3]
    positions = [p.last_position for p in pages]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_verify_whole_log_and_append_multi(
    store: EventStoreDBStore, server: FakeServer
) -> None:
    results = await store.append_multi(
        [
            StreamAppend("c-1", [new(1)], StreamState.NO_STREAM),
            StreamAppend("d-1", [new(2)], StreamState.NO_STREAM),
        ]
    )
    assert [r.version for r in results] == [0, 0]
    report = await store.verify()
    assert report.ok and (report.streams, report.events) == (2, 2)
    server.streams["d-1"][0].data = b'{"n":3}'
    assert (await store.verify()).broken == [("d-1", 0)]


async def test_append_multi_is_not_atomic(store: EventStoreDBStore) -> None:
    await store.append("d-1", [new(0)], StreamState.NO_STREAM)
    with pytest.raises(WrongExpectedVersion):
        await store.append_multi(
            [
                StreamAppend("c-1", [new(1)], StreamState.NO_STREAM),
                StreamAppend("d-1", [new(2)], StreamState.NO_STREAM),
            ]
        )
    assert len(await store.read_stream("c-1")) == 1  # documented: the first stream stays written


# The main engineer's contract suite, run on the fake server (it skips what ESDB cannot do).
try:
    from tests.eventstore import test_contract as _contract

    _contract_module: ModuleType | None = _contract
except Exception:  # the suite is being written concurrently: skip rather than break collection
    _contract_module = None
CONTRACT = (
    sorted(n for n in dir(_contract_module) if n.startswith("test_")) if _contract_module else []
)


@pytest.mark.parametrize("name", CONTRACT)
async def test_contract_suite_on_the_fake_server(name: str, store: EventStoreDBStore) -> None:
    await getattr(_contract_module, name)(store, "t" + uuid.uuid4().hex[:12])
