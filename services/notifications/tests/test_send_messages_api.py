"""SendMessages over real gRPC with contacts served for real: each request answered as
SendMessage would answer it alone, in order (a decision, or its refusal with the reason and
domain its status would carry); a retry of the batch answers the first answers and writes
nothing; a batch of no request or too many is refused whole, writing nothing."""

from __future__ import annotations

import grpc

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from services.notifications.tests.conftest import Env, expect_error
from services.notifications.tests.test_messages_api import _contact, _data, _template

MARKETING = epb.MESSAGE_KIND_MARKETING
UNKNOWN = "0d9b1b8e-5b0f-4e5c-8d7b-2a4c6e8f0a1b"


def _request(rid: str, tid: str, **who: str) -> pb.SendMessageRequest:
    return pb.SendMessageRequest(
        template_id=tid, kind=MARKETING, data=_data(offer="tea"), request_id=rid, **who
    )


async def test_each_request_is_answered_as_send_message_would(env: Env) -> None:
    ada = await _contact(env)
    bob = await _contact(env, "bob@example.com", subscribe=False, first_name="Bob")
    tid = await _template(env, text="Hello {{ contact.first_name }}: {{ data.offer }}")
    batch = pb.SendMessagesRequest(
        requests=[
            _request("b-ada", tid, contact_id=ada),
            _request("b-bob", tid, contact_id=bob),
            _request("b-bad", tid, contact_id="not-a-uuid"),
            _request("b-unknown", tid, contact_id=UNKNOWN),
            _request("b-by-email", tid, email="ada@example.com"),
        ]
    )
    answered = await env.stub.SendMessages(batch)
    kinds = [r.WhichOneof("result") for r in answered.results]
    assert kinds == ["message", "message", "refusal", "refusal", "message"]
    first, second, bad, unknown, by_email = answered.results
    assert first.message.status == pb.MESSAGE_STATUS_QUEUED
    assert first.message.contact_id == ada and first.message.address == ""
    assert second.message.decisions[0].reason == "NO_CONSENT"
    assert (bad.refusal.code, bad.refusal.reason) == ("INVALID_ARGUMENT", "INVALID_CONTACT_ID")
    assert [v.field for v in bad.refusal.field_violations] == ["contact_id"]
    assert (unknown.refusal.code, unknown.refusal.reason) == ("NOT_FOUND", "CONTACT_NOT_FOUND")
    assert unknown.refusal.domain == "notifications.crm"
    # the same contact twice in a batch: smart sending counts the batch's first send
    assert by_email.message.decisions[0].reason == "SMART_SENDING"
    await env.settle()
    got = await env.stub.GetMessage(pb.GetMessageRequest(message_id=first.message.message_id))
    assert got.message.address == "ada@example.com"

    before = await env.written()
    again = await env.stub.SendMessages(batch)
    assert [r.WhichOneof("result") for r in again.results] == kinds
    ids = [r.message.message_id for r in again.results if r.WhichOneof("result") == "message"]
    assert ids == [r.message.message_id for r in answered.results if r.HasField("message")]
    assert await env.written() == before


async def test_a_batch_of_none_or_too_many_is_refused_whole(env: Env) -> None:
    tid = await _template(env)
    before = await env.written()
    await expect_error(
        env.stub.SendMessages(pb.SendMessagesRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_BATCH_SIZE",
    )
    many = [_request(f"m-{i}", tid, contact_id=UNKNOWN) for i in range(501)]
    await expect_error(
        env.stub.SendMessages(pb.SendMessagesRequest(requests=many)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_BATCH_SIZE",
    )
    assert await env.written() == before
