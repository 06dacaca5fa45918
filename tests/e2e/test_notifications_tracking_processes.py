"""Notifications tracking through real processes: contacts, the notifications serve, project and
delivery roles, and a real SMTP server (aiosmtpd in its own process). A marketing email arrives
with tracked links, an open pixel and List-Unsubscribe pointing at the serve role's HTTP port;
the pixel and the link answer; the mailbox's one-click POST withdraws the consent at contacts,
and the next marketing message is skipped NO_CONSENT."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications.tests.delivery_env import SmtpSink
from tests.e2e.processes import SERVING, Proc, free_port

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
HTML = (
    "<html><body><p>Hello {{ contact.first_name }}</p>"
    '<a href="https://shop.example/tea?utm_source=crm">Our teas</a></body></html>'
)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


def _html(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


async def test_the_unsubscribe_link_withdraws_consent_and_the_next_message_is_skipped(
    dsn: str, procs: list[Proc], tmp_path: Path
) -> None:
    sink = SmtpSink(tmp_path)
    try:
        await _run(dsn, procs, sink)
    finally:
        sink.stop()


async def _run(dsn: str, procs: list[Proc], sink: SmtpSink) -> None:
    contacts = Proc("serve", dsn)
    procs.append(contacts)
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    tracking = {
        "CONTACTS_TARGET": f"127.0.0.1:{contacts.grpc_port}",
        "TRACKING_BASE_URL": base,
        "TRACKING_SECRET": "e2e-tracking-secret",
    }
    delivery = Proc(
        "delivery",
        dsn,
        "notifications",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(sink.port),
        MESSAGE_ID_DOMAIN="e2e.example",
    )
    serve = Proc("serve", dsn, "notifications", HTTP_PORT=str(http_port), **tracking)
    project = Proc(
        "project",
        dsn,
        "notifications",
        DELIVERY_URL=f"127.0.0.1:{delivery.grpc_port}",
        DISPATCH_POLL_SECONDS="0.1",
        **tracking,
    )
    procs += [delivery, serve, project]
    for p in (contacts, delivery, serve, project):
        await p.wait_health(SERVING, timeout=60)

    async with contacts.channel() as cch, serve.channel() as nch, aiohttp.ClientSession() as http:
        people, consent = cpb_grpc.ContactsServiceStub(cch), kpb_grpc.ConsentServiceStub(cch)
        notifications = pb_grpc.NotificationsServiceStub(nch)
        cid = (
            await people.RegisterContact(
                cpb.RegisterContactRequest(email="e2e-tracking@example.com", first_name="Eve")
            )
        ).contact.contact_id
        await consent.RecordConsent(
            kpb.RecordConsentRequest(
                contact_id=cid,
                channel=kpb.CHANNEL_EMAIL,
                state=kpb.CONSENT_STATE_SUBSCRIBED,
                legal_basis=kpb.LEGAL_BASIS_CONSENT,
            )
        )
        variant = epb.TemplateVariant(
            subject="Tea news", text="Hello {{ contact.first_name }}", html=HTML
        )
        template = (
            await notifications.CreateTemplate(
                pb.CreateTemplateRequest(
                    key="e2e-news", name="News", channel=epb.CHANNEL_EMAIL, variants=[variant]
                )
            )
        ).template.template_id

        def send(request_id: str) -> Awaitable[pb.SendMessageResponse]:
            return notifications.SendMessage(
                pb.SendMessageRequest(
                    contact_id=cid,
                    template_id=template,
                    kind=epb.MESSAGE_KIND_MARKETING,
                    request_id=request_id,
                )
            )

        first = (await send("e2e-first")).message
        assert first.decisions[0].outcome == epb.OUTCOME_SEND

        async def arrived() -> bool:
            return len(sink.messages()) == 1

        await eventually(arrived)
        [mail] = sink.messages()
        assert mail["To"] == "e2e-tracking@example.com"
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        [unsubscribe] = re.findall(r"<(http[^>]+)>", mail["List-Unsubscribe"])
        html = _html(mail)
        [click] = re.findall(rf'href="({re.escape(base)}/c/[^"]+)"', html)
        [pixel] = re.findall(rf'src="({re.escape(base)}/o/[^"]+)"', html)
        assert "shop.example" not in html and unsubscribe.startswith(f"{base}/u/")

        async with http.get(pixel) as r:
            assert (r.status, r.content_type) == (200, "image/gif")
        async with http.get(click, allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (
                302,
                "https://shop.example/tea?utm_source=crm",
            )
        async with http.get(unsubscribe) as r:  # the page: nothing changes
            assert r.status == 200
        async with http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status == 200

        got = await consent.GetConsent(kpb.GetConsentRequest(contact_id=cid))
        [email] = [c for c in got.channels if c.channel == kpb.CHANNEL_EMAIL]
        assert email.state == kpb.CONSENT_STATE_UNSUBSCRIBED
        second = (await send("e2e-second")).message
        assert (second.decisions[0].outcome, second.decisions[0].reason) == (
            epb.OUTCOME_SKIP,
            "NO_CONSENT",
        )
