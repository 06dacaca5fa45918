"""Segmentation as real processes beside contacts and orders: a contact registered and
consenting through contacts, an order placed through orders, and the contact enters a segment;
it leaves it when the window passes (a timer in the segmentation project process, no event);
membership as of each instant is right, and ExplainMembership says why."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from crm.contacts.v1 import consent_pb2 as conpb
from crm.contacts.v1 import consent_pb2_grpc as conpb_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.orders.v1 import events_pb2 as epb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from crm.segmentation.v1 import segmentation_pb2 as spb
from crm.segmentation.v1 import segmentation_pb2_grpc as spb_grpc
from tests.e2e.processes import SERVING, Proc

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
WINDOW = timedelta(days=30)


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def test_a_contact_enters_by_order_and_leaves_when_the_window_passes(
    dsn: str, procs: list[Proc]
) -> None:
    contacts = Proc("serve", dsn)
    procs.append(contacts)
    target = {"CONTACTS_TARGET": f"127.0.0.1:{contacts.grpc_port}"}
    orders = Proc("serve", dsn, "orders", WEBHOOK_PORT="0", **target)
    seg_serve = Proc("serve", dsn, "segmentation", **target)
    seg_project = Proc("project", dsn, "segmentation", TIMER_POLL_SECONDS="0.1", **target)
    procs += [orders, seg_serve, seg_project]
    for p in (contacts, orders, seg_serve, seg_project):
        await p.wait_health(SERVING)

    def channel(p: Proc) -> grpc.aio.Channel:
        return p.channel()

    async with channel(contacts) as cch, channel(orders) as och, channel(seg_serve) as sch:
        segs = spb_grpc.SegmentationServiceStub(sch)
        rule = "placed_order(count >= 1, within 30d) AND consent.email = 'subscribed'"
        seg = (
            await segs.CreateSegment(
                spb.CreateSegmentRequest(key="e2e-recent", name="r", rule=rule)
            )
        ).segment
        contact = (
            await cpb_grpc.ContactsServiceStub(cch).RegisterContact(
                cpb.RegisterContactRequest(email="e2e-seg@example.com")
            )
        ).contact.contact_id
        await conpb_grpc.ConsentServiceStub(cch).RecordConsent(
            conpb.RecordConsentRequest(
                contact_id=contact,
                channel=conpb.CHANNEL_EMAIL,
                state=conpb.CONSENT_STATE_SUBSCRIBED,
                legal_basis=conpb.LEGAL_BASIS_CONSENT,
            )
        )
        # Placed 30 days minus 3 s ago: in the window for 3 more seconds.
        placed = datetime.now(UTC) - WINDOW + timedelta(seconds=3)
        await opb_grpc.OrdersServiceStub(och).PlaceOrder(
            opb.PlaceOrderRequest(
                customer=opb.CustomerRef(contact_id=contact),
                currency="EUR",
                items=[epb.LineItem(sku="TEA-1", quantity=1, unit_price=900)],
                place_time=ts(placed),
            )
        )

        async def is_member(at: datetime | None = None) -> bool:
            req = spb.IsMemberRequest(contact_id=contact, segment_id=seg.segment_id)
            if at is not None:
                req.as_of.CopyFrom(ts(at))
            return bool((await segs.IsMember(req)).member)

        await eventually(is_member)
        entered = datetime.now(UTC)
        explained = await segs.ExplainMembership(
            spb.ExplainMembershipRequest(contact_id=contact, segment_id=seg.segment_id)
        )
        assert explained.member and explained.cause == "MEMBERSHIP_CAUSE_EVENT"
        assert [p.value for p in explained.now.parts] == [True, True]

        async def left() -> bool:
            return not await is_member()

        await eventually(left)
        flipped = placed + WINDOW
        assert await is_member(flipped - timedelta(milliseconds=1))
        assert not await is_member(flipped)
        assert await is_member(entered)
        why = await segs.ExplainMembership(
            spb.ExplainMembershipRequest(contact_id=contact, segment_id=seg.segment_id)
        )
        assert not why.member and why.cause == "MEMBERSHIP_CAUSE_TIME_PASSED"
        assert why.now.value is False
        # As of when it was a member: the rule of then on the facts of then, at that instant.
        past = spb.ExplainMembershipRequest(contact_id=contact, segment_id=seg.segment_id)
        past.as_of.CopyFrom(ts(entered))
        then = await segs.ExplainMembership(past)
        assert then.member and then.as_of_rule_version == 1
        assert [p.value for p in then.as_of_explanation.parts] == [True, True]
