"""Notifications end to end through real processes (issue 11): a contact registered and
consenting through contacts; a marketing email SendMessage decided reaches a real SMTP server
personalised, with its Message-ID, List-Unsubscribe (https and mailto, one-click) and both a
text and an HTML part, and GetMessage shows decided → dispatched → sent; a transactional SMS
reaches the SMS gateway with basic auth and the message id as Idempotency-Key; a marketing SMS
to a contact whose local time is inside quiet hours is deferred to the next 08:00 there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications.domain.unsubscribe import Unsubscribe
from tests.e2e.notifications_env import (
    MAIL_DOMAIN,
    SMS_LOGIN,
    TRACKING,
    Suite,
    data,
    eventually,
)
from tests.e2e.processes import Proc

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
MARKETING, TRANSACTIONAL = epb.MESSAGE_KIND_MARKETING, epb.MESSAGE_KIND_TRANSACTIONAL
ADA = {"email": "ada.lovelace@example.com", "phone": "+33612345678"}


def fixed_zone(local_hour: int, now: datetime) -> str:
    """An IANA fixed-offset zone (Etc/GMT±N) where ``now`` is ``local_hour`` o'clock: whole
    hours from UTC, -12..+14 covering every hour of the day. POSIX signs: Etc/GMT-2 is UTC+2."""
    east = (local_hour - now.astimezone(UTC).hour) % 24
    if east > 14:
        east -= 24
    return "Etc/GMT" if east == 0 else f"Etc/GMT{-east:+d}"


def next_local(hour: int, after: datetime, zone: str) -> datetime:
    """The first ``hour``:00 local in ``zone`` strictly after ``after`` (a fixed offset)."""
    local = after.astimezone(ZoneInfo(zone))
    at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    return (at if at > local else at + timedelta(days=1)).astimezone(UTC)


def parts(email: EmailMessage) -> dict[str, str]:
    return {str(p.get_content_type()): str(p.get_content()) for p in email.iter_parts()}


async def test_email_sms_and_quiet_hours_through_real_processes(
    dsn: str, procs: list[Proc], tmp_path: Path
) -> None:
    suite = Suite(dsn, tmp_path, procs)
    try:
        await suite.start()
        await suite.start_project()
        await _run(suite)
    finally:
        suite.stop_sinks()


async def _run(suite: Suite) -> None:
    now = datetime.now(UTC)
    day, night = fixed_zone(12, now), fixed_zone(2, now)  # far from 21:00 and 08:00 both
    ada = await suite.register(**ADA, time_zone=day, first_name="Ada", last_name="Lovelace")
    news = await suite.template(
        "tea-news",
        epb.CHANNEL_EMAIL,
        subject="{{ contact.first_name }}, your tea is back",
        text="Hello {{ contact.first_name }} {{ contact.last_name }}: {{ data.offer }}",
        html="<p>Hello <b>{{ contact.first_name }}</b>: {{ data.offer }}</p>",
    )
    shipped = await suite.template(
        "shipped", epb.CHANNEL_SMS, body="Hi {{ contact.first_name }}, {{ data.order }} shipped"
    )
    async with suite.serve.channel() as ch:
        api = pb_grpc.NotificationsServiceStub(ch)

        # A marketing email, personalised, to the contact's address.
        sent = await api.SendMessage(
            pb.SendMessageRequest(
                contact_id=ada,
                template_id=news,
                kind=MARKETING,
                data=data(offer="Darjeeling & Assam"),
                request_id="e2e-news-1",
            )
        )
        mid = sent.message.message_id
        assert sent.message.decisions[0].outcome == epb.OUTCOME_SEND

        async def email_arrived() -> bool:
            return len(suite.smtp.received()) >= 1

        await eventually(email_arrived, "the email at the SMTP server")
        [record] = suite.smtp.received()
        [email] = suite.smtp.messages()
        assert record["rcpt_tos"] == [ADA["email"]]
        assert record["mail_from"] == "news@shop.example"
        assert email["To"] == ADA["email"]
        assert email["From"] == "Shop <news@shop.example>"
        assert email["Subject"] == "Ada, your tea is back"
        assert email["Message-ID"] == f"<{mid}@{MAIL_DOMAIN}>"
        assert email.get_content_type() == "multipart/alternative"
        body = parts(email)
        assert list(body) == ["text/plain", "text/html"]
        assert body["text/plain"].strip() == "Hello Ada Lovelace: Darjeeling & Assam"
        html, pixel = body["text/html"].strip().split("<img ", 1)  # the open pixel, appended
        assert html == "<p>Hello <b>Ada</b>: Darjeeling &amp; Assam</p>"
        assert pixel.startswith(f'src="{TRACKING["TRACKING_BASE_URL"]}/o/') and pixel.endswith("/>")
        https, mailto = (t.strip() for t in str(email["List-Unsubscribe"]).split(","))
        prefix = f"<{TRACKING['TRACKING_BASE_URL']}/u/"
        assert https.startswith(prefix) and https.endswith(">"), https
        token = https.removeprefix(prefix).removesuffix(">")
        assert mailto == f"<mailto:{TRACKING['UNSUBSCRIBE_MAILTO']}?subject=unsubscribe%20{token}>"
        signer = Unsubscribe(TRACKING["TRACKING_BASE_URL"], TRACKING["TRACKING_SECRET"].encode())
        assert signer.message_of(token) == mid  # the link names this message, signed
        assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        async def status(message_id: str, wanted: int) -> pb.Message:
            async def reached() -> bool:
                try:  # the read model follows the log: NOT_FOUND until it has the message
                    got = await api.GetMessage(pb.GetMessageRequest(message_id=message_id))
                except grpc.aio.AioRpcError as e:
                    assert e.code() == grpc.StatusCode.NOT_FOUND, e
                    return False
                return bool(got.message.status == wanted)

            await eventually(reached, f"message {message_id} in status {wanted}")
            return (await api.GetMessage(pb.GetMessageRequest(message_id=message_id))).message

        got = await status(mid, pb.MESSAGE_STATUS_SENT)
        assert [x.outcome for x in got.decisions] == [epb.OUTCOME_SEND]
        assert [s.WhichOneof("step") for s in got.delivery] == ["dispatched", "sent"]
        assert got.delivery[1].sent.detail.startswith("250")
        assert got.address == ADA["email"]

        # A transactional SMS: to the gateway, basic auth, the message id as Idempotency-Key.
        sms = await api.SendMessage(
            pb.SendMessageRequest(
                contact_id=ada,
                template_id=shipped,
                kind=TRANSACTIONAL,
                data=data(order="order 1042"),
                request_id="e2e-shipped-1",
            )
        )
        sms_id = sms.message.message_id
        assert sms.message.decisions[0].outcome == epb.OUTCOME_SEND

        async def sms_arrived() -> bool:
            return len(suite.gateway.requests()) >= 1

        await eventually(sms_arrived, "the SMS at the gateway")
        [request] = suite.gateway.requests()
        assert request["authorized"] and request["applied"]
        assert request["key"] == sms_id
        assert request["form"] == {
            "To": ADA["phone"],
            "From": "SHOP",
            "Body": "Hi Ada, order 1042 shipped",
        }
        got = await status(sms_id, pb.MESSAGE_STATUS_SENT)
        assert [s.WhichOneof("step") for s in got.delivery] == ["dispatched", "sent"]
        assert got.delivery[1].sent.provider_id == request["sid"]
        assert SMS_LOGIN[0] not in str(got)  # the gateway's credentials stay in the workers

        # Quiet hours: 02:00 where Grace lives; a marketing SMS waits for 08:00 there.
        grace = await suite.register(
            email="grace@example.com", phone="+33612345679", time_zone=night, first_name="Grace"
        )
        asked = datetime.now(UTC)
        promo = await api.SendMessage(
            pb.SendMessageRequest(
                contact_id=grace,
                template_id=shipped,
                kind=MARKETING,
                data=data(order="your sample"),
                request_id="e2e-promo-1",
            )
        )
        [decided] = promo.message.decisions
        assert (decided.outcome, decided.reason) == (epb.OUTCOME_DEFER, "QUIET_HOURS")
        assert decided.time_zone == night
        assert decided.defer_until_time.ToDatetime(tzinfo=UTC) == next_local(8, asked, night)
        assert promo.message.status == pb.MESSAGE_STATUS_DEFERRED
        got = await status(promo.message.message_id, pb.MESSAGE_STATUS_DEFERRED)
        assert list(got.delivery) == []
    # Nothing else reached the servers: one email, one SMS.
    assert len(suite.smtp.received()) == 1
    assert len(suite.gateway.requests()) == 1
