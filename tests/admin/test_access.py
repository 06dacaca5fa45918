"""Who may call the Admin API (crm.options.v1.access on each method, checked by the
interceptor for streams as for unary calls): operators everything, auditors the reads, other
services nothing, and nobody without a token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from crm.admin.v1 import admin_pb2 as apb
from crm.admin.v1 import admin_pb2_grpc as apb_grpc
from services.contacts.spec import SPEC as CONTACTS
from shared.testing import tokens
from shared.testing.service_env import Projecting, projecting
from tests.admin.conftest import crm
from tests.admin.flaky import role

pytestmark = pytest.mark.timeout(120)
Call = Callable[[apb_grpc.AdminServiceStub], Awaitable[Any]]


async def drain(stream: Any) -> list[Any]:
    return [m async for m in stream]


READS: dict[str, Call] = {
    "ListProjections": lambda s: s.ListProjections(apb.ListProjectionsRequest()),
    "ListParkedEvents": lambda s: s.ListParkedEvents(apb.ListParkedEventsRequest()),
    "ReadStream": lambda s: drain(s.ReadStream(apb.ReadStreamRequest(stream="nobody-1"))),
    "ExportEvents": lambda s: drain(s.ExportEvents(apb.ExportEventsRequest())),
    "ListCheckpoints": lambda s: s.ListCheckpoints(apb.ListCheckpointsRequest()),
}
CHANGES: dict[str, Call] = {
    "RebuildProjection": lambda s: drain(
        s.RebuildProjection(apb.RebuildProjectionRequest(projection="flaky"))
    ),
    "SkipParkedEvent": lambda s: s.SkipParkedEvent(
        apb.SkipParkedEventRequest(
            projection="flaky", event_id="7b1f1a52-0000-4000-8000-000000000000", reason="x"
        )
    ),
    "CreateCheckpoint": lambda s: s.CreateCheckpoint(apb.CreateCheckpointRequest()),
}


@pytest.fixture
async def flaky(dsn: str) -> AsyncIterator[Projecting]:
    async with projecting(CONTACTS, dsn, role=role) as r:
        yield r


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_operators_may_do_everything_auditors_read_services_nothing(
    flaky: Projecting,
) -> None:
    # admitted, then answered (CreateCheckpoint: this role holds no signing key)
    passes = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
    denied = grpc.StatusCode.PERMISSION_DENIED
    for who, reads, changes in [
        ("operator", passes, passes),
        ("auditor", passes, {denied}),
        ("service", {denied}, {denied}),
    ]:
        async with flaky.channel_as(who) as ch:
            stub = apb_grpc.AdminServiceStub(ch)
            for name, call in READS.items():
                assert await code_of(call(stub)) in reads, (who, name)
            for name, call in CHANGES.items():
                assert await code_of(call(stub)) in changes, (who, name)
    async with grpc.aio.insecure_channel(flaky.target) as ch:
        stub = apb_grpc.AdminServiceStub(ch)
        for name, call in {**READS, **CHANGES}.items():
            assert await code_of(call(stub)) is grpc.StatusCode.UNAUTHENTICATED, name


async def test_the_crm_command_sends_the_token(flaky: Projecting) -> None:
    where = ["--service", "contacts", "--admin", f"contacts={flaky.target}"]
    code, _, errors = await crm("projections", "status", *where, role="auditor")
    assert code == 0, errors
    code, _, errors = await crm("projections", "rebuild", "flaky", *where, role="auditor")
    assert code == 2 and "PERMISSION_DENIED" in errors
    code, _, errors = await crm("projections", "status", *where, role="")
    assert code == 2 and "UNAUTHENTICATED" in errors
    code, _, errors = await crm(
        "projections", "status", *where, "--token", tokens.TOKENS["operator"], role=""
    )
    assert code == 0, errors
