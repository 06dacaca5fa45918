"""A serve process killed with SIGKILL under load and started again: while it is down, callers
get UNAVAILABLE; each caller retries every call not acknowledged with the same request id until
it is; then every request id has exactly one effect in the log, the one its answer names, even
for calls whose first attempt died with the process (committed or not)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from services.contacts.domain import contact as contacts
from services.orders.domain import order as orders
from shared.db import connect_pool
from tests.e2e.processes import SERVING, Proc, Retrying, free_port

pytestmark = pytest.mark.slow

CLIENTS = 6  # concurrent callers, each with its own request ids
ACKED_BEFORE = ACKED_AFTER = 30  # acknowledged calls before the kill, and after the restart


@dataclass(frozen=True)
class Command:
    """A creating call whose request id decides the entity: how to make the k-th request of a
    client, what the answer names, and the event that records the effect."""

    service: str
    stub: Callable[[grpc.aio.Channel], Any]
    method: str
    request: Callable[[str, str], Any]  # (client, request id) -> request
    answered: Callable[[Any], str]  # answer -> the entity's id
    event_type: str
    stream_of: Callable[[str], str]
    env: Callable[[], dict[str, str]] = dict


def _register(client: str, request_id: str) -> pb.RegisterContactRequest:
    return pb.RegisterContactRequest(email=f"{request_id}@kill.example.com", request_id=request_id)


def _place(client: str, request_id: str) -> opb.PlaceOrderRequest:
    return opb.PlaceOrderRequest(
        customer=opb.CustomerRef(contact_id=str(uuid.uuid5(uuid.NAMESPACE_OID, client))),
        currency="EUR",
        items=[epb.LineItem(sku="TEA-1", quantity=1, unit_price=1250)],
        request_id=request_id,
    )


REGISTER_CONTACT = Command(
    "contacts",
    pb_grpc.ContactsServiceStub,
    "RegisterContact",
    _register,
    lambda r: r.contact.contact_id,
    contacts.REGISTERED,
    contacts.stream_of,
)
PLACE_ORDER = Command(
    "orders",
    opb_grpc.OrdersServiceStub,
    "PlaceOrder",
    _place,
    lambda r: r.order.order_id,
    orders.PLACED,
    orders.stream_of,
    # orders by contact id never call the contacts service: nothing needs to listen there
    lambda: {"CONTACTS_TARGET": f"127.0.0.1:{free_port()}", "WEBHOOK_PORT": "0"},
)


class Clients:
    """CLIENTS callers, each issuing its own requests one after the other, every one retried
    with its request id until acknowledged; ``answers``: request id -> the id answered."""

    def __init__(self, command: Command, channel: grpc.aio.Channel) -> None:
        self.command = command
        self.call = getattr(command.stub(channel), command.method)
        self.calls = Retrying()
        self.answers: dict[str, str] = {}
        self.stop = asyncio.Event()

    async def client(self, name: str) -> None:
        k = 0
        while not self.stop.is_set():
            k += 1
            request_id = f"{name}-{k}"
            request = self.command.request(name, request_id)
            answer = await self.calls.until_acked(self.call, request, timeout=30)
            self.answers[request_id] = self.command.answered(answer)

    async def run(self) -> None:
        await asyncio.gather(
            *(self.client(f"kill-{uuid.uuid4().hex[:6]}-{c}") for c in range(CLIENTS))
        )

    async def until(self, acked: int, what: str, timeout: float = 120) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.answers) < acked:
            assert asyncio.get_running_loop().time() < deadline, f"no {acked} acks {what}"
            await asyncio.sleep(0.05)


async def until_refused(calls: Retrying, code: grpc.StatusCode, more_than: int) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while calls.refused[code] <= more_than:
        assert asyncio.get_running_loop().time() < deadline, f"no {code.name} while down"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("command", [REGISTER_CONTACT, PLACE_ORDER], ids=lambda c: c.method)
async def test_kill_9_under_load_then_retries_have_one_effect_each(
    dsn: str, procs: list[Proc], command: Command
) -> None:
    serve = Proc("serve", dsn, command.service, LOG_LEVEL="ERROR", **command.env())
    procs.append(serve)
    await serve.wait_health(SERVING, timeout=60)
    async with serve.channel() as channel:
        clients = Clients(command, channel)
        load = asyncio.create_task(clients.run())
        try:
            await clients.until(ACKED_BEFORE, "before the kill")
            unavailable = clients.calls.refused[grpc.StatusCode.UNAVAILABLE]
            serve.kill()  # SIGKILL mid-load: calls in flight die with it
            acked_at_kill = len(clients.answers)
            # While it is down, callers are told UNAVAILABLE (and keep retrying).
            await until_refused(clients.calls, grpc.StatusCode.UNAVAILABLE, unavailable)
            restarted = datetime.now(UTC)
            serve.start()
            await serve.wait_health(SERVING, timeout=60)
            await clients.until(acked_at_kill + ACKED_AFTER, "after the restart")
            clients.stop.set()
            await asyncio.wait_for(load, 120)
        finally:
            load.cancel()

    assert clients.calls.retried, "no call was retried: the kill interrupted nothing"
    assert clients.calls.retried <= clients.answers.keys()  # every retried call got its answer
    pool = await connect_pool(dsn, min_size=1, max_size=1)
    try:
        rows = await pool.fetch(
            "SELECT metadata->>'request_id' AS request_id, stream_id, recorded_at"
            " FROM eventstore.events"
            " WHERE type = $1",
            command.event_type,
        )
    finally:
        await pool.close()
    effects: dict[str, list[str]] = {}
    for r in rows:
        effects.setdefault(r["request_id"], []).append(r["stream_id"])
    # Exactly one effect per request id, no effect without an acknowledged request, and each
    # answer (a retried call's too) names the entity the log holds.
    assert effects.keys() == clients.answers.keys()
    assert {rid: len(streams) for rid, streams in effects.items() if len(streams) != 1} == {}
    assert len({s[0] for s in effects.values()}) == len(effects)  # no two share an entity
    for request_id, answered in clients.answers.items():
        assert effects[request_id] == [command.stream_of(answered)], request_id
    # Retried calls whose first attempt had committed before the process died (answer lost).
    lost = {r["request_id"] for r in rows if r["recorded_at"] < restarted} & clients.calls.retried
    print(
        f"{command.method}: {len(clients.answers)} acknowledged, {len(clients.calls.retried)} "
        f"retried ({len(lost)} had committed before the kill), "
        f"refused: {dict(clients.calls.refused)}"
    )
