"""Access control over a real socket, on a real service (contacts, served from its spec with the
test token table): who gets in, who is refused and how, and what stays open."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from services.contacts.spec import SPEC
from shared.grpckit import client
from shared.grpckit.auth import TokenTable, parse_tokens
from shared.grpckit.server import GrpcServer
from shared.grpckit.upstream import reason_of
from shared.testing import tokens
from shared.testing.rpc import expect_error
from shared.testing.service_env import Served, serving
from tests.grpckit.probe import SERVICE as PROBE
from tests.grpckit.probe import Probe, call

DOMAIN = "contacts.crm"
UNAUTHENTICATED, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
REGISTER = "crm.contacts.v1.ContactsService/RegisterContact"


@pytest.fixture
async def served(dsn: str) -> AsyncIterator[Served]:
    async with serving(SPEC, dsn, projections=[]) as s:
        yield s


def stub(served: Served, token: str) -> tuple[grpc.aio.Channel, pb_grpc.ContactsServiceStub]:
    ch = client.channel(served.target, token)
    return ch, pb_grpc.ContactsServiceStub(ch)


async def test_a_call_without_a_token_is_unauthenticated(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.target) as ch:
        register = pb_grpc.ContactsServiceStub(ch).RegisterContact
        await expect_error(
            register(pb.RegisterContactRequest(email="a@example.com")),
            UNAUTHENTICATED,
            "TOKEN_MISSING",
            DOMAIN,
        )
        # Not a bearer token, or an empty one: invalid, whatever follows.
        for header in ("Basic dGVzdDp0ZXN0", "Bearer ", f"Token {tokens.SERVICE_TOKEN}"):
            await expect_error(
                register(
                    pb.RegisterContactRequest(email="a@example.com"),
                    metadata=(("authorization", header),),
                ),
                UNAUTHENTICATED,
                "TOKEN_INVALID",
                DOMAIN,
            )
    assert await served.event_count() == 0


async def test_an_unknown_token_is_unauthenticated(served: Served) -> None:
    for wrong in ("not-a-token", tokens.SERVICE_TOKEN + "x", tokens.SERVICE_TOKEN.upper()):
        ch, contacts = stub(served, wrong)
        async with ch:
            await expect_error(
                contacts.RegisterContact(pb.RegisterContactRequest(email="a@example.com")),
                UNAUTHENTICATED,
                "TOKEN_INVALID",
                DOMAIN,
            )
    assert await served.event_count() == 0


async def test_a_role_the_rpc_does_not_declare_is_denied(served: Served) -> None:
    ch, auditor = stub(served, tokens.TOKENS["auditor"])
    async with ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await auditor.RegisterContact(pb.RegisterContactRequest(email="a@example.com"))
    await expect_error(_raise(info.value), DENIED, "ROLE_NOT_ALLOWED", DOMAIN)
    reason, metadata = reason_of(info.value)
    assert reason == "ROLE_NOT_ALLOWED"
    assert metadata["role"] == "auditor" and metadata["method"] == REGISTER
    assert metadata["allowed"] == "operator,service"
    # BatchGetContactVersions is for services only: an operator is refused too.
    ch, operator = stub(served, tokens.TOKENS["operator"])
    async with ch:
        await expect_error(
            operator.BatchGetContactVersions(pb.BatchGetContactVersionsRequest()),
            DENIED,
            "ROLE_NOT_ALLOWED",
            DOMAIN,
        )
    assert await served.event_count() == 0


async def _raise(err: grpc.aio.AioRpcError) -> None:
    raise err


async def test_a_role_the_rpc_declares_is_served(served: Served) -> None:
    for role in ("service", "operator"):
        ch, contacts = stub(served, tokens.TOKENS[role])
        async with ch:
            made = await contacts.RegisterContact(
                pb.RegisterContactRequest(email=f"{role}@example.com")
            )
        assert made.contact.email == f"{role}@example.com"
    ch, auditor = stub(served, tokens.TOKENS["auditor"])
    async with ch:  # a read the auditor may make (no personal data in it)
        await auditor.ListDuplicateCandidates(pb.ListDuplicateCandidatesRequest())


async def test_health_and_reflection_need_no_token(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.target) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflect.ServerReflectionInfo(iter([request])):
            names = {s.name for s in answer.list_services_response.service}
            assert "crm.contacts.v1.ContactsService" in names
            break


async def test_a_method_that_declares_nothing_is_refused_to_everyone() -> None:
    """A service without an access option (the probe has no proto at all): nobody gets in, in
    the service's own error domain."""
    probe = Probe()
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        services=[(PROBE, probe.register)],
        tokens=TokenTable(parse_tokens(tokens.TABLE, "tests")),
    )
    await server.start()
    await server.ready()
    try:
        for role, token in tokens.TOKENS.items():
            async with client.channel(f"127.0.0.1:{server.port}", token) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(ch, "Ok")(b"", timeout=10)
                await expect_error(_raise(info.value), DENIED, "ROLE_NOT_ALLOWED", "probe.crm")
                assert role in (info.value.details() or "")
    finally:
        await server.stop()
