"""An auditor without database credentials: the Admin API's ExportEvents, ListCheckpoints and
CreateCheckpoint over real sockets against real project roles (one holding the signing key, one
not), and `crm events export` / `crm audit checkpoint` on them with a token, then
`crm events verify --file --against` offline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from grpc_status import rpc_status

from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.contacts.spec import SPEC as CONTACTS
from shared.admin.servicer import AdminServicer
from shared.domain.errors import Precondition
from shared.domain.timestamps import timestamp_text
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.audit.checkpoints import SigningKey, b64
from shared.eventstore.audit.postgres import PostgresAuditLog
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.errors import error_info
from shared.testing.service_env import Projecting, projecting
from tests.admin.conftest import crm
from tests.admin.flaky import role
from tests.eventstore.audit_support import ev, fill, tamper

pytestmark = pytest.mark.timeout(180)


@dataclass
class Roles:
    """Two project roles on a log holding one event ("seed-0") and checkpoint 1."""

    store: PostgresEventStore
    dsn: str
    key: SigningKey
    signer: Projecting  # its environment holds CHECKPOINT_SIGNING_KEY
    plain: Projecting  # no key

    def admin(self, role: Projecting) -> pb_grpc.AdminServiceStub:
        return pb_grpc.AdminServiceStub(role.channel)

    def first_plain(self) -> list[str]:
        """`crm` options: the role without the key registered first, the signer second."""
        return [
            "--admin",
            f"contacts={self.plain.target}",
            "--admin",
            f"orders={self.signer.target}",
        ]


@pytest.fixture
async def roles(dsn: str) -> AsyncIterator[Roles]:
    key = SigningKey.generate()
    store = await PostgresEventStore.connect(dsn, max_size=4)
    # Checkpoint 1 over one event before the signer starts: its writer then waits an interval
    # (an hour) from it, and signs nothing behind the tests' backs.
    await store.append("seed-0", [ev(n=0)], StreamState.NO_STREAM)
    audit = PostgresAuditLog(store.pool)
    while await audit.create_checkpoint(key) is None:  # until the event is final (see below)
        await asyncio.sleep(0.05)
    signing = {"checkpoint_signing_key": key.private_text(), "checkpoint_interval_seconds": 3600}
    async with (
        projecting(CONTACTS, dsn, role=role, settings=signing) as signer,
        projecting(CONTACTS, dsn, role=role) as plain,
    ):
        yield Roles(store, dsn, key, signer, plain)
    await store.close()


# A checkpoint covers the final position: events whose position no running transaction can still
# commit below. Another transaction of the cluster (a runner's batch) may hold that back for a
# moment after an append, and "the log has not moved" is then the right answer: these helpers
# ask again until the new events are covered, as an operator would.
SIGNING_WAIT = 10.0


async def until_signed(stub: pb_grpc.AdminServiceStub) -> pb.CreateCheckpointResponse:
    deadline = asyncio.get_running_loop().time() + SIGNING_WAIT
    while True:
        made = await stub.CreateCheckpoint(pb.CreateCheckpointRequest())
        if made.created or asyncio.get_running_loop().time() > deadline:
            return made
        await asyncio.sleep(0.05)


async def until_signed_by_crm(*options: str) -> tuple[int, str, str]:
    deadline = asyncio.get_running_loop().time() + SIGNING_WAIT
    while True:
        code, out, errors = await crm("audit", "checkpoint", "--create", *options)
        if out or code or asyncio.get_running_loop().time() > deadline:
            return code, out, errors
        await asyncio.sleep(0.05)


def lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def reason_of(exc: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, str]:
    status = rpc_status.from_call(exc)
    info = error_info(status) if status is not None else None
    assert info is not None, exc
    return exc.code(), info.domain, info.reason


async def fails(call: Any) -> tuple[grpc.StatusCode, str, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return reason_of(exc)
    raise AssertionError("the call succeeded")


async def exported(stub: pb_grpc.AdminServiceStub, request: pb.ExportEventsRequest) -> bytes:
    return b"".join([m.data async for m in stub.ExportEvents(request)])


async def test_an_auditor_exports_the_log_and_its_checkpoints_and_verifies_them_offline(
    roles: Roles, tmp_path: Path
) -> None:
    await fill(roles.store)
    code, out, errors = await until_signed_by_crm(*roles.first_plain())
    assert code == 0, errors
    (first,) = lines(out)
    assert first["number"] == 2 and "checkpoint 2: position" in errors
    await roles.store.append("c-1", [ev(note="é \u2028 after the first", big=2**60)], 1)
    await roles.store.append("d-1", [ev(n=1), ev(n=2)], StreamState.NO_STREAM)
    code, out, errors = await until_signed_by_crm(*roles.first_plain())
    assert code == 0 and lines(out)[0]["number"] == 3, errors
    code, out, errors = await crm("audit", "checkpoint", "--create", *roles.first_plain())
    assert code == 0 and out == "" and "has not moved since checkpoint 3" in errors
    await roles.store.append("c-0", [ev(n=3)], 1)

    auditor = ["--admin", f"contacts={roles.plain.target}"]
    code, kept, errors = await crm("audit", "checkpoint", *auditor, role="auditor")
    assert code == 0 and [c["number"] for c in lines(kept)] == [1, 2, 3], errors
    code, later, _ = await crm("audit", "checkpoint", "--after", "1", *auditor, role="auditor")
    assert code == 0 and lines(later) == lines(kept)[1:]
    code, log, errors = await crm("events", "export", *auditor, role="auditor")
    assert code == 0 and "exported 11 events" in errors, errors
    code, direct, _ = await crm("events", "export", "--database-url", roles.dsn, role="")
    assert code == 0 and log == direct  # byte for byte the export the database path writes

    (tmp_path / "checkpoints.jsonl").write_text(kept)
    (tmp_path / "log.jsonl").write_text(log)
    verify = ["events", "verify", "--file", str(tmp_path / "log.jsonl")]
    pinned = ["--public-key", b64(roles.key.public_key), "--json"]
    against = ["--against", str(tmp_path / "checkpoints.jsonl")]
    code, report, _ = await crm(*verify, *against, *pinned, role="")  # no token, no database
    assert code == 0, report
    assert (orjson.loads(report)["events"], orjson.loads(report)["checkpoints_checked"]) == (11, 3)

    edited = log.replace('\\"n\\": 1', '\\"n\\": 7', 1)  # an event's data, as stored
    assert edited != log
    (tmp_path / "log.jsonl").write_text(edited)
    code, report, _ = await crm(*verify, *against, *pinned, role="")
    assert code == 1 and "altered_event" in {f["kind"] for f in orjson.loads(report)["findings"]}


async def test_a_range_by_position_or_time_is_the_database_paths_range(roles: Roles) -> None:
    await fill(roles.store)
    stub = roles.admin(roles.plain)
    made = await until_signed(roles.admin(roles.signer))
    assert made.created and made.checkpoint.number == 2
    await roles.store.append("d-1", [ev(n=1), ev(n=2)], StreamState.NO_STREAM)
    since = made.checkpoint.position + 1
    body = lines((await exported(stub, pb.ExportEventsRequest(since_position=since))).decode())
    assert [b["stream"] for b in body if b["kind"] == "head"] == ["c-0", "c-1", "c-2", "seed-0"]
    assert [b["stream"] for b in body if b["kind"] == "event"] == ["d-1", "d-1"]
    at = await roles.store.pool.fetchval(
        "SELECT recorded_at FROM eventstore.events WHERE stream_id = 'd-1' AND version = 1"
    )
    for bounds in (["--since", timestamp_text(at)], ["--until", str(since - 1)], []):
        code, through_api, errors = await crm(
            "events", "export", *bounds, "--admin", f"contacts={roles.plain.target}", "--json"
        )
        assert code == 0, errors
        code, direct, _ = await crm("events", "export", *bounds, "--database-url", roles.dsn)
        assert through_api == direct and lines(through_api)[-1]["kind"] == "end"
    empty = pb.ExportEventsRequest()
    empty.since_time.FromJsonString("2999-01-01T00:00:00Z")
    assert lines((await exported(stub, empty)).decode())[-1] == {
        "kind": "end",
        "heads": 5,
        "events": 0,
    }


async def test_a_large_export_comes_in_chunks_that_may_cut_a_line(roles: Roles) -> None:
    payload = "x" * 600
    for s in range(20):
        events = [NewEvent("test.v1.Big", {"s": s, "i": i, "p": payload}) for i in range(60)]
        await roles.store.append(f"big-{s}", events, StreamState.NO_STREAM)
    messages = [m async for m in roles.admin(roles.plain).ExportEvents(pb.ExportEventsRequest())]
    assert len(messages) >= 3
    assert any(not m.data.endswith(b"\n") for m in messages[:-1])  # a line cut between two
    assert [m.exported_events for m in messages] == sorted(m.exported_events for m in messages)
    last = messages[-1]
    assert last.exported_events == 1201 and last.position == last.last_position
    body = lines(b"".join(m.data for m in messages).decode())
    assert len(body) == 1203 and body[-1] == {"kind": "end", "heads": 0, "events": 1201}


async def test_checkpoints_are_listed_in_pages(roles: Roles) -> None:
    signer = roles.admin(roles.signer)
    for n in range(5):
        await roles.store.append(f"p-{n}", [ev(n=n)], StreamState.NO_STREAM)
        assert (await until_signed(signer)).created
    stub, numbers, token = roles.admin(roles.plain), [], ""
    while True:
        page = await stub.ListCheckpoints(
            pb.ListCheckpointsRequest(after_number=1, page_size=2, page_token=token)
        )
        numbers += [c.number for c in page.checkpoints]
        token = page.next_page_token
        if not token:
            break
    assert numbers == [2, 3, 4, 5, 6]
    assert (await fails(stub.ListCheckpoints(pb.ListCheckpointsRequest(after_number=-1))))[2] == (
        "INVALID_AFTER_NUMBER"
    )
    first = await stub.ListCheckpoints(pb.ListCheckpointsRequest(page_size=1))
    other = pb.ListCheckpointsRequest(after_number=2, page_token=first.next_page_token)
    assert (await fails(stub.ListCheckpoints(other)))[2] == "INVALID_PAGE_TOKEN"


async def test_bad_requests_and_roles_without_the_key_are_refused_clearly(
    roles: Roles,
) -> None:
    stub, signer = roles.admin(roles.plain), roles.admin(roles.signer)
    domain = "admin.crm"
    refused = {
        "since_position": pb.ExportEventsRequest(since_position=-1),
        "until_position": pb.ExportEventsRequest(until_position=-5),
        "range": pb.ExportEventsRequest(since_position=9, until_position=3),
    }
    bad_time = pb.ExportEventsRequest()
    bad_time.since_time.nanos = -1
    refused["since_time"] = bad_time
    for field, request in refused.items():
        code, where, reason = await fails(exported(stub, request))
        assert (code, where, reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            domain,
            f"INVALID_{field.upper()}",
        )
    assert await fails(stub.CreateCheckpoint(pb.CreateCheckpointRequest())) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        domain,
        "SIGNING_KEY_MISSING",
    )
    nothing = await signer.CreateCheckpoint(pb.CreateCheckpointRequest())
    assert not nothing.created and nothing.checkpoint.number == 1  # the log has not moved
    code, _, errors = await crm(
        "audit", "checkpoint", "--create", "--service", "contacts", *roles.first_plain()
    )
    assert code == 2 and "none has CHECKPOINT_SIGNING_KEY" in errors
    code, _, errors = await crm("events", "export", "--since", "9", "--until", "3")
    assert code == 2 and "--since is after --until" in errors
    code, out, errors = await crm(
        "events", "export", "--json", "--admin", "contacts=127.0.0.1:1", "--service", "contacts"
    )
    assert code == 2 and out == "", out  # stdout is for the export; the error goes to stderr
    assert '"code": "UNAVAILABLE"' in errors and "cannot reach contacts" in errors


async def test_a_log_that_lost_its_tail_is_tampering(roles: Roles) -> None:
    await fill(roles.store)
    code, out, errors = await until_signed_by_crm(*roles.first_plain())
    assert code == 0 and lines(out)[0]["number"] == 2, errors
    await tamper(
        roles.store,
        "DELETE FROM eventstore.events WHERE position = (SELECT max(position) FROM"
        " eventstore.events)",
    )
    code, out, errors = await crm("audit", "checkpoint", "--create", "--json", *roles.first_plain())
    assert code == 1 and lines(out)[0]["error"]["reason"] == "LOG_BEHIND_CHECKPOINT", errors
    code, _, errors = await crm(
        "audit",
        "checkpoint",
        "--create",
        "--service",
        "contacts",
        "--admin",
        f"contacts={roles.plain.target}",
        role="auditor",
    )
    assert code == 2 and "PERMISSION_DENIED" in errors


async def test_a_backend_without_checkpoints_says_so(dsn: str) -> None:
    """What a project role on the EventStoreDB backend binds (log_audit.audit_side: no audit
    side): each audit RPC refuses with AUDIT_NOT_SUPPORTED rather than failing inside."""
    store = await PostgresEventStore.connect(dsn, max_size=2)
    servicer = AdminServicer("contacts")
    servicer.bind(store, store.pool, dsn, [], 100, audit=None, signing_key=SigningKey.generate())
    calls = [
        lambda: servicer.ListCheckpoints(pb.ListCheckpointsRequest(), None),
        lambda: servicer.CreateCheckpoint(pb.CreateCheckpointRequest(), None),
        lambda: anext(servicer.ExportEvents(pb.ExportEventsRequest(), None)),
    ]
    try:
        for call in calls:
            with pytest.raises(Precondition) as refused:
                await call()
            assert refused.value.reason == "AUDIT_NOT_SUPPORTED"
    finally:
        await servicer.close()
        await store.close()
