"""The services as real processes: both roles, /metrics, health, SIGTERM drain; orders calling
the contacts process over gRPC and taking a signed Shopify webhook over HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import urllib.request

import grpc
import orjson
import pytest

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from tests.e2e.processes import NOT_SERVING, SERVING, Proc, free_port


async def scrape(port: int) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
            return str(r.read().decode())

    return await asyncio.to_thread(get)


async def test_both_roles_serve_project_expose_metrics_and_drain(
    dsn: str, procs: list[Proc]
) -> None:
    serve, project = Proc("serve", dsn), Proc("project", dsn)
    procs += [serve, project]
    await serve.wait_health(SERVING)
    await project.wait_health(SERVING)
    async with serve.channel() as ch:
        stub = pb_grpc.ContactsServiceStub(ch)
        c = (await stub.RegisterContact(pb.RegisterContactRequest(email="p@e2e.io"))).contact
        for _ in range(100):  # the project process builds the read model FindContact reads
            try:
                found = await stub.FindContact(pb.FindContactRequest(email="p@e2e.io"))
                break
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND
                await asyncio.sleep(0.05)
        assert found.contact.contact_id == c.contact_id
    text = await scrape(serve.metrics_port)
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="RegisterContact"' in text
    # the contact and its identity claim, then the record of the FindContact that read it
    assert "crm_events_appended_total 3.0" in text
    assert "grpc_server_handling_seconds_bucket" in text
    text = await scrape(project.metrics_port)
    assert 'crm_projection_position{projection="contacts"}' in text
    assert serve.terminate() == 0
    assert project.terminate() == 0


async def test_not_serving_and_unavailable_while_the_database_is_away(procs: list[Proc]) -> None:
    serve = Proc("serve", f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    procs.append(serve)
    await serve.wait_health(SERVING, service="liveness")
    assert await serve.health() == NOT_SERVING
    async with serve.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.ContactsServiceStub(ch).RegisterContact(
                pb.RegisterContactRequest(email="x@e2e.io"), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert serve.terminate(timeout=10) == 0  # SIGTERM is honoured even while waiting for the DB


async def test_orders_processes_resolve_customers_take_webhooks_and_drain(
    dsn: str, procs: list[Proc]
) -> None:
    contacts = Proc("serve", dsn)
    procs.append(contacts)
    hook_port, secret = free_port(), "e2e-secret"
    orders_env = {
        "CONTACTS_TARGET": f"127.0.0.1:{contacts.grpc_port}",
        "WEBHOOK_PORT": str(hook_port),
        "SHOPIFY_WEBHOOK_SECRET": secret,
        "SHOPIFY_SHOP_DOMAINS": "e2e.myshopify.com",
    }
    serve = Proc("serve", dsn, "orders", **orders_env)
    project = Proc("project", dsn, "orders", **orders_env)
    procs += [serve, project]
    for p in (contacts, serve, project):
        await p.wait_health(SERVING)
    async with serve.channel() as ch:
        stub = opb_grpc.OrdersServiceStub(ch)
        placed = await stub.PlaceOrder(
            opb.PlaceOrderRequest(
                customer=opb.CustomerRef(email="buyer@e2e.io"),
                currency="EUR",
                items=[epb.LineItem(sku="A", quantity=1, unit_price=900)],
            )
        )
        assert placed.order.contact_id  # a guest, registered by the contacts process
        body = orjson.dumps(
            {
                "id": 42,
                "email": "buyer@e2e.io",
                "currency": "EUR",
                "created_at": "2026-11-20T10:00:00Z",
                "line_items": [{"id": 1, "sku": "B", "quantity": 2, "price": "4.50"}],
            }
        )
        headers = {
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": "e2e.myshopify.com",
            "X-Shopify-Hmac-Sha256": base64.b64encode(
                hmac.new(secret.encode(), body, hashlib.sha256).digest()
            ).decode(),
        }

        def post() -> dict[str, str]:
            req = urllib.request.Request(
                f"http://127.0.0.1:{hook_port}/webhooks/shopify", body, headers, method="POST"
            )
            with urllib.request.urlopen(req) as r:  # noqa: S310 - a local test URL
                return dict(orjson.loads(r.read()))

        hooked = await asyncio.to_thread(post)
        for _ in range(100):  # the project process builds the metrics
            m = await stub.GetCustomerMetrics(
                opb.GetCustomerMetricsRequest(contact_id=placed.order.contact_id)
            )
            if m.order_count == 2:
                break
            await asyncio.sleep(0.05)
        assert m.order_count == 2 and m.currencies[0].revenue == 900 + 900
        got = await stub.GetOrder(opb.GetOrderRequest(order_id=hooked["order_id"]))
        assert got.order.contact_id == placed.order.contact_id
    text = await scrape(project.metrics_port)
    assert 'crm_projection_position{projection="orders"}' in text
    assert 'crm_projection_position{projection="cart-recovery"}' in text
    for p in (serve, project, contacts):
        assert p.terminate() == 0
