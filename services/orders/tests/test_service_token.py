"""Orders calls contacts with its service token (CRM_SERVICE_TOKEN): with it, a customer given
by email is resolved and contacts records the read as the service's; with a token contacts
does not know, the order is refused as CONTACTS_UNAVAILABLE (upstream UNAUTHENTICATED) and
nothing is written."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from crm.audit.v1 import events_pb2 as audit_pb2
from crm.orders.v1 import orders_pb2 as pb
from crm.orders.v1 import orders_pb2_grpc as pb_grpc
from services.contacts import spec as contacts
from services.orders import spec as orders
from services.orders.app import OrdersApi
from services.orders.tests.conftest import Env
from services.orders.tests.helpers import expect_error, item
from shared.grpckit.audit import CATEGORY
from shared.grpckit.upstream import reason_of
from shared.testing import tokens
from shared.testing.events import read_everything
from shared.testing.rpc import published_message
from shared.testing.service_env import serving

pytestmark = pytest.mark.timeout(60)


def order_for(email: str) -> pb.PlaceOrderRequest:
    return pb.PlaceOrderRequest(
        customer=pb.CustomerRef(email=email), currency="EUR", items=[item()]
    )


async def test_customers_are_resolved_with_the_service_token(env: Env) -> None:
    first = (await env.stub.PlaceOrder(order_for("svc@example.com"))).order  # a new guest
    for _ in range(500):  # until contacts' read model finds the guest by email
        if await env.store.pool.fetchval(
            "SELECT count(*) FROM contacts_rm.contacts WHERE contact_id = $1",
            uuid.UUID(first.contact_id),
        ):
            break
        await asyncio.sleep(0.01)
    second = (await env.stub.PlaceOrder(order_for("svc@example.com"))).order  # found
    assert first.contact_id == second.contact_id
    [event] = await read_everything(env.store, categories=[CATEGORY])
    read = published_message(event, audit_pb2)
    assert isinstance(read, audit_pb2.PersonalDataRead)
    assert (read.principal, read.method, list(read.contact_ids)) == (
        tokens.NAMES["service"],
        "crm.contacts.v1.ContactsService/FindContact",
        [first.contact_id],
    )


async def test_a_token_contacts_does_not_know_refuses_the_order(dsn: str) -> None:
    async with (
        serving(contacts.SPEC, dsn, projections=[]) as contacts_service,
        serving(
            orders.SPEC,
            dsn,
            api=OrdersApi(any_webhook_port=True),
            projections=[],
            settings={
                "contacts_target": contacts_service.target,
                "crm_service_token": "not-the-service-token",
            },
        ) as orders_service,
    ):
        stub = pb_grpc.OrdersServiceStub(orders_service.channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.PlaceOrder(order_for("nobody@example.com"))
        await expect_error(_raise(info.value), grpc.StatusCode.UNAVAILABLE, "CONTACTS_UNAVAILABLE")
        assert reason_of(info.value)[1]["upstream_code"] == "UNAUTHENTICATED"
        assert await orders_service.event_count() == 0


async def _raise(err: grpc.aio.AioRpcError) -> None:
    raise err
