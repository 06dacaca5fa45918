"""The project role as `python -m services.notifications project` runs it, with contacts and
orders served for real and an in-process DeliveryService over a socket: the dispatcher (one
leader) sends what SendMessage queued, the read model follows, and a rebuild of the read model
sends nothing and schedules nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.notifications.v1 import delivery_pb2 as dpb
from crm.notifications.v1 import delivery_pb2_grpc as dpb_grpc
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from services.notifications import spec
from services.notifications.adapters.messages_readmodel import MessagesProjection
from services.notifications.tests.conftest import Env
from shared.testing import readmodels
from shared.testing.service_env import projecting

pytestmark = pytest.mark.timeout(120)


class Workers(dpb_grpc.DeliveryServiceServicer):
    """Stands in for the delivery role: records every message and accepts it."""

    def __init__(self) -> None:
        self.messages: list[dpb.OutboundMessage] = []

    async def Deliver(self, request: dpb.DeliverRequest, context: Any) -> dpb.DeliverResponse:
        self.messages.extend(request.messages)
        return dpb.DeliverResponse(
            outcomes=[
                dpb.DeliveryOutcome(
                    message_id=m.message_id, status=dpb.DELIVERY_STATUS_SENT, detail="250 OK"
                )
                for m in request.messages
            ]
        )


@pytest.fixture
async def workers() -> AsyncIterator[tuple[Workers, str]]:
    server = grpc.aio.server()
    servicer = Workers()
    dpb_grpc.add_DeliveryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


async def _eventually(check: Any, what: str) -> None:
    for _ in range(400):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def test_the_project_role_sends_what_was_queued_once(
    env: Env, dsn: str, workers: tuple[Workers, str]
) -> None:
    recorder, target = workers
    ada = await env.contacts.RegisterContact(cpb.RegisterContactRequest(email="ada@example.com"))
    cid = ada.contact.contact_id
    made = await env.stub.CreateTemplate(
        pb.CreateTemplateRequest(
            key="receipt",
            name="Receipt",
            channel=epb.CHANNEL_EMAIL,
            variants=[epb.TemplateVariant(subject="Receipt", text="Thanks")],
        )
    )
    sent = await env.stub.SendMessage(
        pb.SendMessageRequest(
            contact_id=cid,
            template_id=made.template.template_id,
            kind=epb.MESSAGE_KIND_TRANSACTIONAL,
        )
    )
    mid = sent.message.message_id
    settings = {
        "contacts_target": env.contacts_served.target,
        "delivery_url": target,
        "dispatch_poll_seconds": 0.05,
    }
    async with projecting(spec.SPEC, dsn, settings=settings):

        async def sent_event() -> bool:
            n = await env.store.pool.fetchval(
                "SELECT count(*) FROM eventstore.events WHERE stream_id = $1 AND type = $2",
                f"message-{mid}",
                "crm.notifications.v1.MessageSent",
            )
            return bool(n)

        await _eventually(sent_event, "MessageSent recorded")
    assert [(m.message_id, m.to, m.attempt) for m in recorder.messages] == [
        (mid, "ada@example.com", 1)
    ]
    assert await env.store.pool.fetch("SELECT * FROM notifications_pipeline.outbox") == []
    await env.settle()
    got = (await env.stub.GetMessage(pb.GetMessageRequest(message_id=mid))).message
    assert got.status == pb.MESSAGE_STATUS_SENT
    assert [s.WhichOneof("step") for s in got.delivery] == ["dispatched", "sent"]

    # A rebuild of the read model equals the live one and sends, queues and schedules nothing,
    # with a message waiting in the outbox meanwhile (the project role is stopped).
    await env.stub.SendMessage(
        pb.SendMessageRequest(
            contact_id=cid,
            template_id=made.template.template_id,
            kind=epb.MESSAGE_KIND_TRANSACTIONAL,
        )
    )
    await env.settle()
    pipeline = (
        "SELECT (SELECT count(*) FROM notifications_pipeline.outbox),"
        " (SELECT count(*) FROM notifications_pipeline.timers)"
    )
    before = tuple(await env.store.pool.fetchrow(pipeline))
    head = await env.store.head_position()
    fresh = await readmodels.fresh(env.store, MessagesProjection(), head)
    live = await readmodels.snapshot(env.store.pool, MessagesProjection.schema)
    assert fresh == live
    assert before == (1, 0)
    assert tuple(await env.store.pool.fetchrow(pipeline)) == before
    assert len(recorder.messages) == 1
