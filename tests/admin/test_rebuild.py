"""RebuildProjection through the Admin API of the real project roles: the rebuilt read model
equals a fresh rebuild of the same log, nothing is appended (replay has no side effects), the
live projection goes on from the same checkpoint, progress streams to the end, and what cannot
be rebuilt is refused."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_status import rpc_status

from crm.admin.v1 import admin_pb2 as apb
from services.registry import SERVICES
from services.segmentation.adapters.contacts_client import GrpcContactVersions
from services.segmentation.adapters.engine import MembershipEngine
from shared.grpckit.audit import CATEGORY
from shared.grpckit.errors import error_info
from shared.projections.model import Projection
from shared.testing import tokens
from shared.testing.events import read_everything
from shared.testing.readmodels import fresh, snapshot
from tests.admin.conftest import Suite


def declared(name: str) -> Projection:
    for spec in SERVICES:
        for p in spec.projections():
            if p.name == name:
                return p
    raise LookupError(name)


async def rebuilt(suite: Suite, service: str, name: str) -> list[apb.Rebuild]:
    call = suite.admin(service).RebuildProjection(
        apb.RebuildProjectionRequest(projection=name), timeout=120
    )
    return [m.rebuild async for m in call]


@pytest.mark.parametrize(
    ("service", "name"),
    [("contacts", "contacts"), ("orders", "orders"), ("segmentation", "segmentation-engine")],
)
async def test_a_rebuild_equals_a_fresh_one_and_appends_nothing(
    suite: Suite, service: str, name: str
) -> None:
    await suite.activity()
    await suite.settled()
    head, events = await suite.store.head_position(), await count(suite)
    projection = declared(name) if name != "segmentation-engine" else engine_of(suite)
    before = await snapshot(suite.store.pool, projection.schema)
    progress = await rebuilt(suite, service, name)
    last = progress[-1]
    assert last.state == apb.Rebuild.STATE_DONE and last.phase == apb.Rebuild.PHASE_DONE
    assert (
        last.progress == 1.0
        and last.applied_events > 0
        and last.requested_by == tokens.NAMES["operator"]
    )
    assert all(m.operation_id == last.operation_id for m in progress)
    # Replay has no side effects. The engine reads personal facts through the contacts API,
    # which records those reads (docs/architecture.md §5): nothing else is appended.
    appended = [e for e in await read_everything(suite.store) if e.position > head]
    if name == "segmentation-engine":
        assert appended and {e.category for e in appended} == {CATEGORY}
    else:
        assert appended == [] and await count(suite) == events
    after = await snapshot(suite.store.pool, projection.schema)
    assert after == before
    assert after == await fresh(suite.store, projection, head)
    listed = await suite.settled()
    mine = next(p for p in listed[service].projections if p.name == name)
    assert mine.last_rebuild.operation_id == last.operation_id
    assert mine.last_rebuild.state == apb.Rebuild.STATE_DONE
    assert mine.checkpoint_position >= head
    # The live projection follows on in the rebuilt tables.
    await suite.activity(tag="b")
    head = (await suite.settled())[service].head_position
    assert await snapshot(suite.store.pool, projection.schema) == await fresh(
        suite.store, projection, head
    )


async def test_a_rebuild_under_writes_ends_equal_to_a_fresh_one(suite: Suite) -> None:
    await suite.activity(n=20)
    await suite.settled()
    writes = asyncio.create_task(suite.activity(n=20, tag="during"))
    progress = await rebuilt(suite, "contacts", "contacts")
    await writes
    assert progress[-1].state == apb.Rebuild.STATE_DONE
    head = (await suite.settled())["contacts"].head_position
    projection = declared("contacts")
    live = await snapshot(suite.store.pool, projection.schema)
    assert len(live["contacts"]) == 40
    assert live == await fresh(suite.store, projection, head)


async def test_what_cannot_be_rebuilt_is_refused(suite: Suite) -> None:
    for service, name, code, reason in [
        ("orders", "cart-recovery", grpc.StatusCode.FAILED_PRECONDITION, "REBUILD_NOT_SUPPORTED"),
        ("orders", "contacts", grpc.StatusCode.NOT_FOUND, "PROJECTION_NOT_FOUND"),
        ("contacts", "", grpc.StatusCode.INVALID_ARGUMENT, "PROJECTION_REQUIRED"),
        ("contacts", "x" * 200, grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rebuilt(suite, service, name)
        assert info.value.code() is code, name
        status = rpc_status.from_call(info.value)
        assert status is not None
        detail = error_info(status)
        assert detail is not None and (detail.reason, detail.domain) == (reason, "admin.crm")


async def count(suite: Suite) -> int:
    return int(await suite.store.pool.fetchval("SELECT count(*) FROM eventstore.events"))


def engine_of(suite: Suite) -> Projection:
    """A membership engine like the role's, for a fresh rebuild (it reads personal facts
    through the contacts API, as the role's does)."""
    contacts = GrpcContactVersions(suite.serve["contacts"].target, tokens.SERVICE_TOKEN)
    suite.closing.append(contacts.close)
    return MembershipEngine(suite.store, contacts)
