"""The intake over HTTP on a real socket, with the real store, contacts and notifications
served over gRPC: each report format records its event on the message and suppresses the
channel in contacts (GetConsent shows it; the next SendMessage is skipped SUPPRESSED); the
third soft bounce in seven days suppresses, two do not; refusals are clear 4xx that write
nothing; redeliveries change nothing; contacts away → 503, and the retry completes the
suppression; SMS status callbacks signed the Twilio way → MessageDelivered / MessageFailed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.contacts import spec as contacts_spec
from services.notifications import spec
from services.notifications.tests.intake_env import (
    DOMAIN,
    PUBLIC,
    SMS_TOKEN,
    IntakeEnv,
    dispatcher_for,
    intake_server,
    sign,
)
from services.notifications.tests.test_bounces import HARD, SOFT, dsn
from shared.eventstore.postgres import PostgresEventStore
from shared.testing.service_env import serving

BOUNCED = "crm.notifications.v1.MessageBounced"
COMPLAINED = "crm.notifications.v1.MessageComplained"
DELIVERED = "crm.notifications.v1.MessageDelivered"
FAILED = "crm.notifications.v1.MessageFailed"
EMAIL, SMS = epb.CHANNEL_EMAIL, epb.CHANNEL_SMS


@pytest.fixture
async def it(dsn: str) -> AsyncIterator[IntakeEnv]:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    async with (
        serving(contacts_spec.SPEC, dsn, store=store) as contacts,
        serving(  # SMS at any hour of the test run: no quiet hours
            spec.SPEC,
            dsn,
            store=store,
            settings={"contacts_target": contacts.target, "sms_quiet_hours": ""},
        ) as s,
        intake_server(store, s, contacts) as (url, client),
        aiohttp.ClientSession() as http,
    ):
        dispatcher, delivery = dispatcher_for(store, client)
        yield IntakeEnv(
            http,
            url,
            store,
            pb_grpc.NotificationsServiceStub(s.channel),
            cpb_grpc.ContactsServiceStub(contacts.channel),
            kpb_grpc.ConsentServiceStub(contacts.channel),
            s,
            dispatcher,
            delivery,
        )
    await store.close()


async def _post_to(it: IntakeEnv, url: str, body: bytes) -> tuple[int, str]:
    async with it.http.post(url + "/bounces", data=body, headers=sign(body)) as r:
        return r.status, (await r.json())["error"]


def json_bounce(message_id: str, bounce_type: str = "hard", **more: str) -> bytes:
    event = {"type": "bounce", "bounce_type": bounce_type, "message_id": message_id, **more}
    return orjson.dumps({"events": [event]})


def arf(message_id: str) -> bytes:
    return (
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Message-ID: <{message_id}@{DOMAIN}>\r\nSubject: Sale\r\n\r\nbody\r\n"
        "--F--\r\n"
    ).encode()


async def _next_send_is_suppressed(it: IntakeEnv, cid: str, tid: str) -> None:
    again = await it.send(cid, tid, dispatch=False)
    assert (again.status, again.decisions[0].reason) == (pb.MESSAGE_STATUS_SKIPPED, "SUPPRESSED")


async def test_a_json_hard_bounce_suppresses_the_email_and_a_redelivery_changes_nothing(
    it: IntakeEnv,
) -> None:
    cid = await it.contact("ada@example.org")
    tid = await it.template(EMAIL)
    m = await it.send(cid, tid)
    body = json_bounce(m.message_id, status="5.1.1", detail="550 <ada@example.org> unknown")
    status, answer = await it.signed("/bounces", body)
    assert status == 200, answer
    assert answer["reports"] == [
        {
            "message_id": m.message_id,
            "kind": "hard_bounce",
            "result": "recorded",
            "suppressed": True,
        }
    ]
    assert await it.suppression(cid, kpb.CHANNEL_EMAIL) == (
        True,
        kpb.SUPPRESSION_REASON_HARD_BOUNCE,
    )
    [bounced] = [
        e for e in await it.store.read_stream(f"message-{m.message_id}") if e.type == BOUNCED
    ]
    assert bounced.data["bounce_type"] == "BOUNCE_TYPE_HARD" and bounced.data["suppress"]
    assert "ada@example.org" not in orjson.dumps(bounced.data).decode()
    written = await it.written()
    status, again = await it.signed("/bounces", body)  # a redelivery under a new webhook-id
    assert (status, again["reports"][0]["result"]) == (200, "already_recorded")
    assert await it.written() == written
    await it.served.settle()
    got = await it.stub.GetMessage(pb.GetMessageRequest(message_id=m.message_id))
    assert got.message.status == pb.MESSAGE_STATUS_BOUNCED
    assert got.message.delivery[-1].bounced.status == "5.1.1"
    await _next_send_is_suppressed(it, cid, tid)


@pytest.mark.parametrize("form", ["message/rfc822", "multipart/report"])
async def test_a_dsn_hard_bounce_suppresses_the_email(it: IntakeEnv, form: str) -> None:
    cid = await it.contact("bob@example.org")
    tid = await it.template(EMAIL)
    m = await it.send(cid, tid)
    raw = dsn(HARD, returned=f"<{m.message_id}@{DOMAIN}>")
    content_type = form
    if form == "multipart/report":  # the body, its Content-Type (boundary) in the header
        head, _, raw = raw.partition(b"\r\n\r\n")
        content_type = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-type:")
        )
    status, answer = await it.signed("/bounces/dsn", raw, content_type)
    assert status == 200, answer
    assert answer["reports"][0]["suppressed"] is True
    assert await it.suppression(cid, kpb.CHANNEL_EMAIL) == (
        True,
        kpb.SUPPRESSION_REASON_HARD_BOUNCE,
    )
    [bounced] = [
        e for e in await it.store.read_stream(f"message-{m.message_id}") if e.type == BOUNCED
    ]
    assert bounced.data["source"] == "dsn" and "<address>" in bounced.data["detail"]
    assert "example.org" not in bounced.data["detail"]
    await _next_send_is_suppressed(it, cid, tid)


async def test_an_abuse_report_is_a_complaint_that_suppresses_the_email(it: IntakeEnv) -> None:
    cid = await it.contact("cy@example.org")
    tid = await it.template(EMAIL)
    m = await it.send(cid, tid)
    status, answer = await it.signed("/complaints", arf(m.message_id), "message/rfc822")
    assert status == 200, answer
    assert answer["reports"][0]["kind"] == "complaint"
    assert await it.suppression(cid, kpb.CHANNEL_EMAIL) == (True, kpb.SUPPRESSION_REASON_COMPLAINT)
    assert COMPLAINED in await it.events(m.message_id)
    await it.served.settle()
    got = await it.stub.GetMessage(pb.GetMessageRequest(message_id=m.message_id))
    assert got.message.status == pb.MESSAGE_STATUS_COMPLAINED
    await _next_send_is_suppressed(it, cid, tid)
    # an abuse report is not a DSN: refused on the bounce endpoint, nothing written
    written = await it.written()
    status, answer = await it.signed("/bounces/dsn", arf(m.message_id), "message/rfc822")
    assert (status, answer["error"]) == (422, "WRONG_REPORT_TYPE")
    assert await it.written() == written


async def test_the_third_soft_bounce_in_seven_days_suppresses_two_do_not(it: IntakeEnv) -> None:
    cid = await it.contact("dee@example.org")
    tid = await it.template(EMAIL)
    for n in (1, 2, 3):
        m = await it.send(cid, tid)
        if n == 2:  # the DSN form counts alike
            raw = dsn(SOFT, returned=f"<{m.message_id}@{DOMAIN}>")
            status, answer = await it.signed("/bounces/dsn", raw, "message/rfc822")
        else:
            status, answer = await it.signed("/bounces", json_bounce(m.message_id, "soft"))
        assert status == 200, answer
        [done] = answer["reports"]
        assert (done["kind"], done["suppressed"]) == ("soft_bounce", n == 3)
        suppressed, _ = await it.suppression(cid, kpb.CHANNEL_EMAIL)
        assert suppressed == (n == 3)
        [event] = [
            e for e in await it.store.read_stream(f"message-{m.message_id}") if e.type == BOUNCED
        ]
        assert event.data["soft_bounce_count"] == n
    await _next_send_is_suppressed(it, cid, tid)


async def test_refused_requests_write_nothing(it: IntakeEnv) -> None:
    cid = await it.contact("eve@example.org")
    tid = await it.template(EMAIL)
    m = await it.send(cid, tid)
    queued = await it.send(cid, tid, dispatch=False)
    body = json_bounce(m.message_id)
    written = await it.written()
    stale = datetime.now(UTC) - timedelta(minutes=10)
    wrong_key = "whsec_" + base64.b64encode(b"another secret of 24 bytes").decode()
    cases = [
        (await it.post("/bounces", body, "application/json"), 401, "INVALID_SIGNATURE"),
        (await it.signed("/bounces", body, secret=wrong_key), 401, "INVALID_SIGNATURE"),
        (await it.signed("/bounces", body, at=stale), 401, "INVALID_SIGNATURE"),
        (
            await it.post("/bounces", body + b" ", "application/json", sign(body)),
            401,
            "INVALID_SIGNATURE",
        ),
        (await it.signed("/bounces", b"{not json"), 400, "MALFORMED_JSON"),
        (await it.signed("/bounces", b'{"events": []}'), 422, "INVALID_REPORT"),
        (await it.signed("/bounces", json_bounce("not-an-id")), 404, "UNKNOWN_MESSAGE"),
        (
            await it.signed("/bounces", json_bounce("7d0e2a4c-1b7d-4c55-9a0e-2d4f1b9c8e71")),
            404,
            "UNKNOWN_MESSAGE",
        ),
        (await it.signed("/bounces", json_bounce(queued.message_id)), 422, "MESSAGE_NOT_SENT"),
        (await it.signed("/bounces/dsn", b"hello", "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE"),
        (
            await it.signed("/bounces/dsn", b"Subject: hi\r\n\r\nhi", "message/rfc822"),
            422,
            "NOT_A_REPORT",
        ),
    ]
    # one bad report in a document refuses the document: the good one is not recorded either
    both = orjson.dumps(
        {
            "events": [
                {"type": "bounce", "bounce_type": "hard", "message_id": m.message_id},
                {"type": "complaint", "message_id": "7d0e2a4c-1b7d-4c55-9a0e-2d4f1b9c8e71"},
            ]
        }
    )
    cases.append((await it.signed("/bounces", both), 404, "UNKNOWN_MESSAGE"))
    for (status, answer), want_status, want_error in cases:
        assert (status, answer["error"]) == (want_status, want_error), answer
    assert await it.written() == written
    assert await it.suppression(cid, kpb.CHANNEL_EMAIL) == (False, 0)


async def test_without_a_secret_every_report_is_refused(it: IntakeEnv) -> None:
    cid = await it.contact("fay@example.org")
    m = await it.send(cid, await it.template(EMAIL))
    async with intake_server(it.store, it.served, it.served, secret="") as (url, _):
        assert await _post_to(it, url, json_bounce(m.message_id)) == (401, "INVALID_SIGNATURE")
    assert BOUNCED not in await it.events(m.message_id)


async def test_contacts_away_answers_503_and_the_retry_completes_the_suppression(
    it: IntakeEnv,
) -> None:
    cid = await it.contact("gil@example.org")
    tid = await it.template(EMAIL)
    m = await it.send(cid, tid)
    body = json_bounce(m.message_id)
    away = "127.0.0.1:1"  # nothing listens there
    async with intake_server(it.store, it.served, it.served, contacts_target=away) as (url, _):
        assert await _post_to(it, url, body) == (503, "CONTACTS_UNAVAILABLE")
    assert BOUNCED in await it.events(m.message_id)  # recorded: the retry must still suppress
    assert await it.suppression(cid, kpb.CHANNEL_EMAIL) == (False, 0)
    status, answer = await it.signed("/bounces", body)  # the provider retries
    assert status == 200
    assert answer["reports"][0] == {
        "message_id": m.message_id,
        "kind": "hard_bounce",
        "result": "already_recorded",
        "suppressed": True,
    }
    assert await it.suppression(cid, kpb.CHANNEL_EMAIL) == (
        True,
        kpb.SUPPRESSION_REASON_HARD_BOUNCE,
    )
    assert (await it.events(m.message_id)).count(BOUNCED) == 1


def twilio(token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio documents it, computed here on its own."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


async def _callback(
    it: IntakeEnv, params: dict[str, str], token: str = SMS_TOKEN, query: str = ""
) -> tuple[int, dict]:
    signature = twilio(token, PUBLIC + "/sms/status" + query, params)
    return await it.post(
        "/sms/status" + query,
        urlencode(params).encode(),
        "application/x-www-form-urlencoded",
        {"X-Twilio-Signature": signature},
    )


async def test_signed_sms_status_callbacks_record_delivered_and_failed(it: IntakeEnv) -> None:
    cid = await it.contact("hal@example.org", phone="+33612345678")
    tid = await it.template(SMS)
    ok, lost = await it.send(cid, tid), await it.send(cid, tid)
    sid = it.delivery.sids[ok.message_id]
    form = {
        "MessageSid": sid,
        "MessageStatus": "delivered",
        "To": "+33612345678",
        "AccountSid": "AC1",
    }
    written = await it.written()
    for bad in (
        await _callback(it, form, token="another token"),
        await it.post("/sms/status", urlencode(form).encode(), "application/x-www-form-urlencoded"),
    ):
        assert (bad[0], bad[1]["error"]) == (401, "INVALID_SIGNATURE")
    unknown = await _callback(it, {**form, "MessageSid": "SMnope"})
    assert (unknown[0], unknown[1]["error"]) == (404, "UNKNOWN_MESSAGE")
    progress = await _callback(it, {**form, "MessageStatus": "sent"})
    assert (progress[0], progress[1]["reports"][0]["result"]) == (200, "ignored")
    assert await it.written() == written
    status, answer = await _callback(it, form)
    assert (status, answer["reports"][0]["result"]) == (200, "recorded")
    status, answer = await _callback(it, form, query="?tag=a%20b")  # posted again, with a query
    assert (status, answer["reports"][0]["result"]) == (200, "already_recorded")
    assert (await it.events(ok.message_id)).count(DELIVERED) == 1
    failed = {
        "MessageSid": it.delivery.sids[lost.message_id],
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
    }
    status, answer = await _callback(it, failed)
    assert (status, answer["reports"][0]["kind"]) == (200, "sms_failed")
    [last] = (await it.store.read_stream(f"message-{lost.message_id}"))[-1:]
    assert (last.type, last.data["final"], last.data["detail"]) == (
        FAILED,
        True,
        "gateway: undelivered, error 30003",
    )
    await it.served.settle()
    got = await it.stub.GetMessage(pb.GetMessageRequest(message_id=ok.message_id))
    assert got.message.status == pb.MESSAGE_STATUS_DELIVERED
    assert got.message.delivery[-1].delivered.provider_id == sid
    got = await it.stub.GetMessage(pb.GetMessageRequest(message_id=lost.message_id))
    assert got.message.status == pb.MESSAGE_STATUS_FAILED
    assert not (await it.suppression(cid, kpb.CHANNEL_SMS))[
        0
    ]  # a carrier failure suppresses nothing


async def test_erasure_deletes_the_intake_rows_of_the_contact(it: IntakeEnv) -> None:
    cid = await it.contact("ivy@example.org", phone="+33687654321")
    m = await it.send(cid, await it.template(EMAIL))
    await it.send(cid, await it.template(SMS))
    status, _ = await it.signed("/bounces", json_bounce(m.message_id, "soft"))
    assert status == 200

    async def rows() -> int:
        return int(
            await it.store.pool.fetchval(
                "SELECT (SELECT count(*) FROM notifications_intake.soft_bounces WHERE contact_id = $1)"
                " + (SELECT count(*) FROM notifications_intake.provider_ids WHERE contact_id = $1)",
                uuid.UUID(cid),
            )
        )

    assert await rows() == 2
    await it.contacts.EraseContact(cpb.EraseContactRequest(contact_id=cid, reason="art. 17"))
    await it.served.settle()
    assert await rows() == 0
