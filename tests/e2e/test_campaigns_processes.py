"""Campaigns end to end through real processes (issue 12, "done when"): contacts, orders,
segmentation and notifications (serve, project, delivery) as in `make run`, a real SMTP server.

A segment of segmentation's (contacts tagged ``vip``, members entering through segmentation's
own engine) gets a campaign at a local time of day in each recipient's zone. Its members: two
subscribed to email (ada, bob), one subscribed in a zone an hour behind (cyd), one never
subscribed (dan), one subscribed but suppressed through contacts' SuppressChannel (eve), one
subscribed who got a marketing email through SendMessage just before (fay: the default policy
skips her for smart sending, 16 h between marketing emails, before her cap of 3 a week); and a
subscribed contact without the tag (gus). Only ada and bob get the campaign's email, once each;
the others' messages are skipped with the policy's reasons; gus gets nothing.

Local time: a real-time test cannot wait for 09:00 everywhere, so the local time of day is the
next whole UTC minute (at least 5 s ahead) as read in America/Sao_Paulo (UTC-3), where ada,
bob, dan, eve and fay live: their messages are decided, and ada's and bob's accepted by the SMTP
server, at that instant, not before. cyd lives in Etc/GMT+4 (UTC-4): the same local time comes
an hour later for her; the campaign's plan (DryRunCampaign of the saved campaign) puts her
there, and nothing of that campaign is sent to her during the test (it stays SENDING).

Then ada clicks the tracked link of her email (the serve role's tracking endpoint) and orders
through orders' API: the campaign's report credits the order (1 conversion, its total in EUR).
bob unsubscribes in one click (RFC 8058 POST to his email's List-Unsubscribe URL). A second
campaign to the segment, sent now, skips bob NO_CONSENT; ada was sent a marketing email minutes
ago, so the policy skips her (and fay) SMART_SENDING; cyd, sent nothing yet, gets it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import grpc
import pytest

from crm.contacts.v1 import consent_pb2 as kpb
from crm.notifications.v1 import campaigns_pb2 as cam
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from crm.notifications.v1 import reports_pb2 as rpb
from crm.orders.v1 import events_pb2 as oepb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from tests.e2e.campaigns_env import Campaigns, Received, inbox, outcome
from tests.e2e.notifications_env import Suite, eventually
from tests.e2e.processes import Proc

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
NEAR, FAR = ZoneInfo("America/Sao_Paulo"), ZoneInfo("Etc/GMT+4")
SHOP_LINK = "https://shop.example/tea/vip?utm_source=crm"
HTML = (
    "<html><body><p>Hello {{ contact.first_name }}</p>"
    f'<a href="{SHOP_LINK}">Our VIP teas</a></body></html>'
)
SEND, SKIP = "OUTCOME_SEND", "OUTCOME_SKIP"


def local_send(at: datetime) -> epb.CampaignSchedule:
    """A local send at ``at``'s day and time of day as read in the near zone."""
    here = at.astimezone(NEAR)
    local = epb.LocalSend(day=here.date().isoformat(), time_of_day=here.strftime("%H:%M"))
    return epb.CampaignSchedule(local=local)


def next_minute(margin: timedelta = timedelta(seconds=5)) -> datetime:
    soon = datetime.now(UTC) + margin
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


def by_recipient(mails: list[Received]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in mails:
        out.setdefault(m.to, []).append(m.message_id)
    return out


async def test_a_campaign_at_local_time_reaches_only_consenting_members_and_reports(
    dsn: str, procs: list[Proc], tmp_path: Path
) -> None:
    suite = Suite(dsn, tmp_path, procs, with_orders=True, with_segmentation=True, with_http=True)
    try:
        await suite.start()
        await suite.start_project()
        await _run(suite, Campaigns(suite))
    finally:
        suite.stop_sinks()


async def _run(suite: Suite, campaigns: Campaigns) -> None:
    await suite.template(
        "vip-news",
        epb.CHANNEL_EMAIL,
        subject="VIP tea week",
        text="Hello {{ contact.first_name }}, our VIP teas are in.",
        html=HTML,
    )
    segment = await campaigns.segment("vip", "tags CONTAINS 'vip'")
    vip = ("vip",)
    ada = await campaigns.contact("ada@example.com", "America/Sao_Paulo", vip)
    bob = await campaigns.contact("bob@example.com", "America/Sao_Paulo", vip)
    cyd = await campaigns.contact("cyd@example.com", "Etc/GMT+4", vip)
    dan = await campaigns.contact("dan@example.com", "America/Sao_Paulo", vip, subscribed=False)
    eve = await campaigns.contact("eve@example.com", "America/Sao_Paulo", vip)
    fay = await campaigns.contact("fay@example.com", "America/Sao_Paulo", vip)
    gus = await campaigns.contact("gus@example.com", "America/Sao_Paulo", ("tea",))
    await campaigns.suppress(eve)
    everyone = {ada, bob, cyd, dan, eve, fay, gus}
    async with suite.serve.channel() as ch:
        before = await pb_grpc.NotificationsServiceStub(ch).SendMessage(
            pb.SendMessageRequest(
                contact_id=fay,
                template_key="vip-news",
                kind=epb.MESSAGE_KIND_MARKETING,
                request_id="e2e-fay-before",
            )
        )
    assert outcome(before.message) == (SEND, "")

    async def fay_mailed() -> bool:
        return before.message.message_id in {m.message_id for m in inbox(suite)}

    await eventually(fay_mailed, "fay's marketing email, before the campaign")

    async def entered() -> bool:
        return await campaigns.members(segment) == {ada, bob, cyd, dan, eve, fay}

    await eventually(entered, "the vip members, entered through segmentation's engine")

    # The first campaign, at the next minute's local time in São Paulo. Its plan is checked
    # first: the zones read model has the contacts' zones (else they would fall back to UTC).
    first = await campaigns.create("VIP week", "vip", "vip-news")

    async def zoned() -> bool:
        at = next_minute()
        plan = await campaigns.planned(first, local_send(at))
        near = dict.fromkeys([ada, bob, dan, eve, fay], at)
        return plan == {**near, cyd: at + timedelta(hours=1)}

    await eventually(zoned, "the plan in each recipient's zone")
    at = next_minute()
    far_at = datetime.combine(at.astimezone(NEAR).date(), at.astimezone(NEAR).time(), FAR)
    assert far_at == at + timedelta(hours=1)  # the same wall-clock time, an hour later
    started = await campaigns.schedule(first, local_send(at))
    assert started.state == cam.CAMPAIGN_STATE_SCHEDULED

    near = {ada, bob, dan, eve, fay}

    async def decided() -> bool:
        return near <= set(await campaigns.messages(first, everyone))

    await eventually(decided, "the near recipients decided at their local time", timeout=120)
    sent = await campaigns.messages(first, everyone)
    assert {cid: outcome(m) for cid, m in sent.items()} == {
        ada: (SEND, ""),
        bob: (SEND, ""),
        dan: (SKIP, "NO_CONSENT"),
        eve: (SKIP, "SUPPRESSED"),
        fay: (SKIP, "SMART_SENDING"),
    }
    for m in sent.values():  # one decision each, at the local instant, not before
        [decision] = m.decisions
        assert decision.decide_time.ToDatetime(tzinfo=UTC) >= at
        assert (decision.trigger.source, decision.trigger.variant) == ("campaign", "main")
        assert decision.time_zone == "America/Sao_Paulo"
    assert sent[fay].decisions[0].last_marketing_send_time.ToDatetime(tzinfo=UTC) < at
    mine = {sent[ada].message_id, sent[bob].message_id}

    async def delivered() -> bool:
        return mine <= {m.message_id for m in inbox(suite)}

    await eventually(delivered, "ada's and bob's campaign emails at the SMTP server")
    mails = {m.message_id: m for m in inbox(suite)}
    for mid in mine:
        assert mails[mid].accepted_at >= at, "accepted before the recipient's local time"
    assert by_recipient(list(mails.values())) == {
        "ada@example.com": [sent[ada].message_id],
        "bob@example.com": [sent[bob].message_id],
        "fay@example.com": [before.message.message_id],  # her SendMessage, not the campaign
    }

    # cyd: an hour later, in the audience frozen at the start, planned at her local time,
    # not sent during the test.
    got = await campaigns.get(first)
    assert (got.state, got.audience_size) == (cam.CAMPAIGN_STATE_SENDING, 6)
    assert (await campaigns.planned(first))[cyd] == far_at
    assert cyd not in await campaigns.messages(first, everyone)

    # ada clicks the tracked link of her email, then orders: the report credits the order.
    base = suite.policy["TRACKING_BASE_URL"]
    ada_mail, bob_mail = mails[sent[ada].message_id].email, mails[sent[bob].message_id].email
    html = ada_mail.get_body(preferencelist=("html",))
    assert html is not None
    [click] = re.findall(rf'href="({re.escape(base)}/c/[^"]+)"', str(html.get_content()))
    async with aiohttp.ClientSession() as http:
        async with http.get(click, allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (302, SHOP_LINK)
        async with suite.orders.channel() as ch:
            placed = await opb_grpc.OrdersServiceStub(ch).PlaceOrder(
                opb.PlaceOrderRequest(
                    customer=opb.CustomerRef(contact_id=ada),
                    currency="EUR",
                    items=[
                        oepb.LineItem(sku="tea-vip", name="VIP tea", quantity=2, unit_price=1250)
                    ],
                    request_id="e2e-ada-order",
                )
            )
        revenue = [rpb.Money(currency="EUR", amount_minor=placed.order.total)]
        assert placed.order.total > 0

        async def converted() -> bool:
            try:
                total = (await campaigns.report(first)).total
            except grpc.aio.AioRpcError as e:  # no message of it folded yet
                assert e.code() == grpc.StatusCode.NOT_FOUND
                return False
            return total.conversions == 1 and list(total.revenue) == revenue

        await eventually(converted, "the order credited in the campaign's report")
        [row] = (await campaigns.report(first)).rows
        assert row.variant == "main"
        assert (row.recipients, row.sent, row.unique_clicks) == (2, 2, 1)
        assert (row.conversions, row.converted, list(row.revenue)) == (1, 1, revenue)

        # bob unsubscribes in one click (RFC 8058): the POST to his List-Unsubscribe URL.
        assert bob_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        [unsubscribe] = re.findall(rf"<({re.escape(base)}/u/[^>]+)>", bob_mail["List-Unsubscribe"])
        async with http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status == 200
    assert await campaigns.email_consent(bob) == kpb.CONSENT_STATE_UNSUBSCRIBED

    # The next campaign, now: bob NO_CONSENT; ada and fay had a marketing email within the
    # smart-sending window (16 h); cyd, sent nothing yet, gets it.
    second = await campaigns.create("VIP week, reminder", "vip", "vip-news")
    await campaigns.schedule(second, epb.CampaignSchedule(now=True))

    async def completed() -> bool:
        return (await campaigns.get(second)).state == cam.CAMPAIGN_STATE_COMPLETED

    await eventually(completed, "the second campaign completed")
    done = await campaigns.get(second)
    assert (done.audience_size, done.tally.sent, done.tally.skipped) == (6, 1, 5)
    again = await campaigns.messages(second, everyone)
    assert {cid: outcome(m) for cid, m in again.items()} == {
        ada: (SKIP, "SMART_SENDING"),
        bob: (SKIP, "NO_CONSENT"),
        cyd: (SEND, ""),
        dan: (SKIP, "NO_CONSENT"),
        eve: (SKIP, "SUPPRESSED"),
        fay: (SKIP, "SMART_SENDING"),
    }

    async def cyd_mailed() -> bool:
        return again[cyd].message_id in {m.message_id for m in inbox(suite)}

    await eventually(cyd_mailed, "cyd's email of the second campaign")
    # Nobody twice: one email per recipient and Message-ID; gus, not a member, nothing.
    assert by_recipient(inbox(suite)) == {
        "ada@example.com": [sent[ada].message_id],
        "bob@example.com": [sent[bob].message_id],
        "cyd@example.com": [again[cyd].message_id],
        "fay@example.com": [before.message.message_id],
    }
    assert not await suite.listed({gus})
    assert cyd not in await campaigns.messages(first, everyone)
