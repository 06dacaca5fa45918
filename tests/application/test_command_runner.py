"""The shared command runner on the in-memory store, with a counter aggregate of its own: the
rules every service's commands inherit (retries answered with the first result, conflicts
decided again, etags, exactly-once system decisions, sealing, reused request ids)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pytest

from shared.application.commands import (
    FINGERPRINT,
    Aggregate,
    CommandRunner,
    Event,
    RequestIdReused,
    Row,
    event_id,
)
from shared.domain.errors import Conflict, NotFound, Precondition, StaleEtag
from shared.eventstore import StreamAppend, WrongExpectedVersion
from shared.eventstore.memory import InMemoryEventStore


@dataclass(frozen=True)
class Counter:
    id: str
    value: int = 0
    secret: str = ""
    version: int = -1


def evolve(
    c: Counter | None, type_: str, data: Mapping[str, Any], _at: datetime, v: int
) -> Counter:
    if type_ == "Created":
        return Counter(data["id"], secret=data.get("secret", ""), version=v)
    assert c is not None
    return replace(c, value=c.value + data["by"], version=v)


def fold(_id: str, rows: Iterable[Row]) -> Counter | None:
    out = None
    for t, d, at, v in rows:
        out = evolve(out, t, d, at, v)
    return out


NS = uuid.UUID("00000000-0000-4000-8000-000000000001")
COUNTER: Aggregate[Counter] = Aggregate(
    namespace=NS,
    stream_of=lambda id_: f"counter-{id_}",
    fold=fold,
    evolve=evolve,
    missing="COUNTER_NOT_FOUND",
    exists="COUNTER_EXISTS",
)


def add(by: int) -> Any:
    def decide(c: Counter) -> list[Event]:
        if c.value + by > 10:
            raise Precondition("TOO_BIG", "at most 10")
        return [("Added", {"by": by})] if by else []

    return decide


async def created(runner: CommandRunner, id_: str, **kw: Any) -> Counter:
    async def plan(_n: int) -> tuple[list[Event], list[StreamAppend]]:
        return [("Created", {"id": id_})], []

    return await runner.create(COUNTER, id_, plan, **kw)


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


async def test_a_retry_gets_the_first_answer_and_writes_nothing(store: InMemoryEventStore) -> None:
    runner = CommandRunner(store)
    await created(runner, "a")
    first = await runner.execute(COUNTER, "a", add(3), request_id="r1")
    await runner.execute(COUNTER, "a", add(1), request_id="r2")
    again = await runner.execute(COUNTER, "a", add(3), request_id="r1")
    assert (first.value, again.value, again.version) == (3, 3, first.version)
    assert len(await store.read_stream("counter-a")) == 3


async def test_an_error_after_success_is_answered_with_the_success(
    store: InMemoryEventStore,
) -> None:
    """The retry of a request that brought the counter to 9 would now be refused (TOO_BIG):
    it gets the first answer instead."""
    runner = CommandRunner(store)
    await created(runner, "a")
    first = await runner.execute(COUNTER, "a", add(9), request_id="r1")
    again = await runner.execute(COUNTER, "a", add(9), request_id="r1")
    assert again == first
    with pytest.raises(Precondition):
        await runner.execute(COUNTER, "a", add(9), request_id="r2")


async def test_racing_writers_are_decided_again_and_all_counted(store: InMemoryEventStore) -> None:
    runner = CommandRunner(store, attempts=20)
    await created(runner, "a")
    await asyncio.gather(*(runner.execute(COUNTER, "a", add(1)) for _ in range(10)))
    assert (await runner.get(COUNTER, "a")).value == 10


async def test_an_etag_names_the_version_and_a_stale_one_is_refused(
    store: InMemoryEventStore,
) -> None:
    runner = CommandRunner(store)
    c = await created(runner, "a")
    await runner.execute(COUNTER, "a", add(1), etag=str(c.version))
    with pytest.raises(StaleEtag) as info:
        await runner.execute(COUNTER, "a", add(1), etag=str(c.version))
    assert info.value.metadata["current_etag"] == str(c.version + 1)


async def test_missing_and_existing_streams(store: InMemoryEventStore) -> None:
    runner = CommandRunner(store)
    with pytest.raises(NotFound) as missing:
        await runner.execute(COUNTER, "nope", add(1))
    assert missing.value.reason == "COUNTER_NOT_FOUND"
    await created(runner, "a", request_id="c1")
    with pytest.raises(Conflict) as exists:
        await created(runner, "a", request_id="c2")
    assert exists.value.reason == "COUNTER_EXISTS"
    assert (await created(runner, "a", request_id="c1")).version == 0  # its own retry


async def test_a_request_id_reused_by_another_request_is_refused(
    store: InMemoryEventStore,
) -> None:
    runner = CommandRunner(store)
    await created(runner, "a")
    await runner.execute(COUNTER, "a", add(1), request_id="r", meta={FINGERPRINT: "one"})
    with pytest.raises(RequestIdReused):
        await runner.execute(COUNTER, "a", add(2), request_id="r", meta={FINGERPRINT: "two"})
    same = await runner.execute(COUNTER, "a", add(1), request_id="r", meta={FINGERPRINT: "one"})
    assert same.value == 1


async def test_a_multi_event_request_is_replayed_whole(store: InMemoryEventStore) -> None:
    runner = CommandRunner(store)
    await created(runner, "a")

    def twice(_c: Counter) -> list[Event]:
        return [("Added", {"by": 1}), ("Added", {"by": 2})]

    first = await runner.execute(COUNTER, "a", twice, request_id="r")
    await runner.execute(COUNTER, "a", add(4))
    again = await runner.execute(COUNTER, "a", twice, request_id="r")
    assert (first.value, again.value) == (3, 3)


async def test_append_once_writes_a_system_decision_once(store: InMemoryEventStore) -> None:
    runner = CommandRunner(store)
    await created(runner, "a")
    wrote = await asyncio.gather(
        *(runner.append_once(COUNTER, "a", add(1), "tick-1", {"actor": "timer"}) for _ in range(5))
    )
    assert wrote.count(True) == 1
    assert (await runner.get(COUNTER, "a")).value == 1


async def test_event_ids_derive_from_the_request(store: InMemoryEventStore) -> None:
    runner = CommandRunner(store)
    await created(runner, "a", request_id="c")
    [e] = await store.read_stream("counter-a")
    assert e.event_id == event_id(NS, "c", "counter-a", 0)


class XorSealing:
    """A toy sealing (not cryptography): enough to see that the runner seals and unseals."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    async def key(self, id_: str) -> bytes | None:
        return self.keys.get(id_)

    async def new_key(self, id_: str, connection: Any) -> bytes:
        return self.keys.setdefault(id_, b"k")

    def seal(self, key: bytes, id_: str, data: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (v[::-1] + "!" if k == "secret" else v) for k, v in data.items()}

    def unseal(self, key: bytes | None, id_: str, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: (("" if key is None else v[:-1][::-1]) if k == "secret" else v)
            for k, v in data.items()
        }


async def test_sealed_fields_are_stored_sealed_and_read_open(store: InMemoryEventStore) -> None:
    sealing = XorSealing()
    sealed = replace(COUNTER, sealing=sealing)
    runner = CommandRunner(store)

    async def plan(_n: int) -> tuple[list[Event], list[StreamAppend]]:
        return [("Created", {"id": "s", "secret": "abc"})], []

    c = await runner.create(sealed, "s", plan)
    [e] = await store.read_stream("counter-s")
    assert (c.secret, e.data["secret"]) == ("abc", "cba!")
    assert (await runner.get(sealed, "s")).secret == "abc"
    del sealing.keys["s"]  # the key destroyed: the data reads as erased
    assert (await runner.get(sealed, "s")).secret == ""


async def test_a_conflict_exhausting_the_attempts_reaches_the_caller(
    store: InMemoryEventStore,
) -> None:
    runner = CommandRunner(store, attempts=2)
    await created(runner, "a")

    async def moving(c: Counter) -> list[Event]:
        await runner.execute(COUNTER, "a", add(1))  # someone else wins every race
        return [("Added", {"by": 0})]

    with pytest.raises(WrongExpectedVersion):
        await runner.execute(COUNTER, "a", moving)
