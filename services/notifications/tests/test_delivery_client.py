"""GrpcDelivery against an in-process DeliveryService over a real socket: the conversion both
ways, the service token on every call, batches split at 500, and every failure of the call
raised as DeliveryUnavailable (the batch in doubt). The real workers are called through it in
test_delivery_worker.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from crm.notifications.v1 import delivery_pb2 as pb
from crm.notifications.v1 import delivery_pb2_grpc as pb_grpc
from crm.notifications.v1 import events_pb2 as epb
from services.notifications.adapters.delivery_client import DeliveryUnavailable, GrpcDelivery
from services.notifications.application.delivery import Outbound, Outcome
from services.notifications.domain import variant

TOKEN = "client-test-token"


class Recording(pb_grpc.DeliveryServiceServicer):
    def __init__(self) -> None:
        self.requests: list[pb.DeliverRequest] = []
        self.auth: list[str] = []
        self.answer: Any = None  # a function of the request, or None: all sent

    async def Deliver(self, request: pb.DeliverRequest, context: Any) -> pb.DeliverResponse:
        self.requests.append(request)
        self.auth.append(dict(context.invocation_metadata()).get("authorization", ""))
        if self.answer is not None:
            return self.answer(request)
        return pb.DeliverResponse(
            outcomes=[
                pb.DeliveryOutcome(
                    message_id=m.message_id,
                    status=pb.DELIVERY_STATUS_SENT,
                    detail=f"to {m.to}",
                    provider_id="SM" + m.message_id[:4],
                )
                for m in request.messages
            ]
        )


@pytest.fixture
async def served() -> AsyncIterator[tuple[Recording, str]]:
    server = grpc.aio.server()
    servicer = Recording()
    pb_grpc.add_DeliveryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


def email(n: int) -> Outbound:
    return Outbound(
        message_id=f"{n:08d}-0000-4000-8000-000000000000",
        channel=variant.EMAIL,
        to=f"ada{n}@example.com",
        sender="Shop <news@shop.example>",
        subject="Hello",
        text="text",
        html="<p>html</p>",
        headers=(("List-Unsubscribe", "<https://shop.example/u>"),),
        attempt=2,
        test=True,
    )


async def test_messages_and_outcomes_convert_both_ways_with_the_token(
    served: tuple[Recording, str],
) -> None:
    servicer, target = served
    client = GrpcDelivery(target, TOKEN)
    sms = Outbound("sms-1", variant.SMS, "+15551234567", sender="+15550000000", body="Hi")
    try:
        got = await client.deliver([email(1), sms])
    finally:
        await client.close()
    assert got == [
        Outcome(email(1).message_id, "sent", "to ada1@example.com", "SM0000"),
        Outcome("sms-1", "sent", "to +15551234567", "SMsms-"),
    ]
    sent = servicer.requests[0].messages
    assert sent[0].channel == epb.CHANNEL_EMAIL
    assert (sent[0].subject, sent[0].text, sent[0].html) == ("Hello", "text", "<p>html</p>")
    assert [(h.name, h.value) for h in sent[0].headers] == [
        ("List-Unsubscribe", "<https://shop.example/u>")
    ]
    assert (sent[0].attempt, sent[0].test, sent[0].sender) == (2, True, "Shop <news@shop.example>")
    assert (sent[1].channel, sent[1].body, sent[1].to) == (epb.CHANNEL_SMS, "Hi", "+15551234567")
    assert servicer.auth == [f"Bearer {TOKEN}"]


async def test_more_than_500_go_as_several_batches_in_order(
    served: tuple[Recording, str],
) -> None:
    servicer, target = served
    client = GrpcDelivery(target, TOKEN)
    try:
        got = await client.deliver([email(n) for n in range(1201)])
    finally:
        await client.close()
    assert [len(r.messages) for r in servicer.requests] == [500, 500, 201]
    assert [o.message_id for o in got] == [email(n).message_id for n in range(1201)]


async def test_statuses_map_and_a_mismatched_answer_is_in_doubt(
    served: tuple[Recording, str],
) -> None:
    servicer, target = served
    client = GrpcDelivery(target, TOKEN)
    statuses = [pb.DELIVERY_STATUS_SENT, pb.DELIVERY_STATUS_RETRY, pb.DELIVERY_STATUS_REJECTED]
    servicer.answer = lambda req: pb.DeliverResponse(
        outcomes=[
            pb.DeliveryOutcome(message_id=m.message_id, status=s)
            for m, s in zip(req.messages, statuses, strict=True)
        ]
    )
    try:
        got = await client.deliver([email(1), email(2), email(3)])
        assert [o.status for o in got] == ["sent", "retry", "rejected"]
        servicer.answer = lambda req: pb.DeliverResponse(
            outcomes=[
                pb.DeliveryOutcome(
                    message_id=req.messages[0].message_id, status=pb.DELIVERY_STATUS_SENT
                )
            ]
        )
        with pytest.raises(DeliveryUnavailable, match="do not match"):
            await client.deliver([email(1), email(2)])
        servicer.answer = lambda req: pb.DeliverResponse(
            outcomes=[pb.DeliveryOutcome(message_id=req.messages[0].message_id)]
        )
        with pytest.raises(DeliveryUnavailable, match="status 0"):
            await client.deliver([email(1)])
    finally:
        await client.close()


async def test_unreachable_workers_raise_with_the_code() -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")  # bound, then closed: nobody listens
    await server.start()
    await server.stop(None)
    client = GrpcDelivery(f"127.0.0.1:{port}", TOKEN, timeout=5)
    try:
        with pytest.raises(DeliveryUnavailable) as raised:
            await client.deliver([email(1)])
    finally:
        await client.close()
    assert raised.value.code == "UNAVAILABLE"


async def test_ready_says_whether_the_workers_can_be_reached(
    served: tuple[Recording, str],
) -> None:
    _, target = served
    up = GrpcDelivery(target, TOKEN)
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")  # bound, then closed: nobody listens
    await server.start()
    await server.stop(None)
    down = GrpcDelivery(f"127.0.0.1:{port}", TOKEN)
    try:
        assert await up.ready() and await up.ready()
        assert not await down.ready()
    finally:
        await up.close()
        await down.close()
