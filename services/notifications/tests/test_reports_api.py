"""ReportsService over a real socket on a real PostgreSQL, with the read model following the
log: messages of a flow's steps and a campaign's variants (their decisions appended as the flow
engine and campaigns will append them), their delivery, opens, clicks, bounces and
unsubscribes, and orders' OrderPlaced credited last-touch within the window; per-step and
per-variant rows, totals, rates, revenue per currency, the days; the errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import flows_pb2 as fpb
from crm.notifications.v1 import flows_pb2_grpc as fpb_grpc
from crm.notifications.v1 import notifications_pb2 as npb
from crm.notifications.v1 import notifications_pb2_grpc as npb_grpc
from crm.notifications.v1 import reports_pb2 as pb
from crm.notifications.v1 import reports_pb2_grpc as pb_grpc
from services.notifications import spec
from services.notifications.adapters.reports_readmodel import PLACED, ReportsProjection
from services.notifications.domain import decision as d
from services.notifications.domain import tracking
from services.notifications.tests.conftest import email, expect_error
from services.notifications.tests.test_flows_api import example
from shared.domain.timestamps import timestamp_text
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.testing import readmodels
from shared.testing.service_env import Served, serving

A, B, C = (str(uuid.UUID(int=i)) for i in (1, 2, 3))
CAMPAIGN = str(uuid.UUID(int=500))
TEMPLATE = str(uuid.UUID(int=600))


@dataclass
class Reports:
    stub: pb_grpc.ReportsServiceStub
    flows: fpb_grpc.FlowsServiceStub
    store: PostgresEventStore
    served: Served

    async def message(self, contact: str, origin: d.Origin, *steps: str) -> str:
        return await append_message(self.store, contact, origin, *steps)

    async def step(self, mid: str, step: str) -> None:
        await self.store.append(d.stream_of(mid), [NewEvent(*STEPS[step](mid))], StreamState.ANY)

    async def order(self, contact: str, currency: str, total: int, placed: datetime) -> str:
        return await append_order(self.store, contact, currency, total, placed)


async def append_message(
    store: PostgresEventStore, contact: str, origin: d.Origin, *steps: str
) -> str:
    """A message decided for ``contact`` from ``origin``, then its ``steps`` (sent, opened,
    clicked, bounced, unsubscribed), each an event of its stream."""
    mid = str(uuid.uuid4())
    decided = {
        "message_id": mid,
        "contact_id": contact,
        "channel": "CHANNEL_EMAIL",
        "kind": "MESSAGE_KIND_MARKETING",
        "template_id": TEMPLATE,
        "trigger": origin.to_data(mid),
        "outcome": "OUTCOME_SEND" if steps else "OUTCOME_SKIP",
        "decision": 1,
    }
    events = [NewEvent(d.DECIDED, decided)]
    events += [NewEvent(*STEPS[step](mid)) for step in steps]
    await store.append(d.stream_of(mid), events, StreamState.NO_STREAM)
    return mid


async def append_order(
    store: PostgresEventStore, contact: str, currency: str, total: int, placed: datetime
) -> str:
    oid = str(uuid.uuid4())
    data = {
        "order_id": oid,
        "contact_id": contact,
        "currency": currency,
        "subtotal": total,
        "total": total,
        "place_time": timestamp_text(placed),
    }
    await store.append(f"order-{oid}", [NewEvent(PLACED, data)], StreamState.NO_STREAM)
    return oid


STEPS: dict[str, Any] = {
    "sent": lambda m: (d.SENT, {"message_id": m, "attempt": 1, "detail": "250 OK"}),
    "opened": lambda m: (tracking.OPENED, {"message_id": m}),
    "clicked": lambda m: (tracking.CLICKED, {"message_id": m, "link": 0, "host": "shop.example"}),
    "bounced": lambda m: (d.BOUNCED, {"message_id": m, "bounce_type": "BOUNCE_TYPE_HARD"}),
    "unsubscribed": lambda m: (
        tracking.UNSUBSCRIBED,
        {"message_id": m, "contact_id": A, "channel": "CHANNEL_EMAIL", "changed": True},
    ),
}


@pytest.fixture
async def reports(dsn: str) -> AsyncIterator[Reports]:
    store = await PostgresEventStore.connect(dsn, max_size=6)
    try:
        async with serving(spec.SPEC, dsn, store=store) as s:
            yield Reports(
                pb_grpc.ReportsServiceStub(s.channel),
                fpb_grpc.FlowsServiceStub(s.channel),
                store,
                s,
            )
    finally:
        await store.close()


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def counts(row: pb.ReportRow) -> tuple[int, ...]:
    return (
        row.recipients,
        row.sent,
        row.delivered,
        row.bounced,
        row.unique_opens,
        row.unique_clicks,
        row.unsubscribes,
        row.conversions,
        row.converted,
    )


def money(row: pb.ReportRow | pb.ReportDay) -> dict[str, int]:
    return {m.currency: m.amount_minor for m in row.revenue}


async def test_a_flow_and_a_campaign_report_their_steps_variants_and_conversions(
    reports: Reports,
) -> None:
    made = await reports.flows.CreateFlow(fpb.CreateFlowRequest(definition=example("win-back")))
    flow_id = made.flow.flow_id

    def step(name: str) -> d.Origin:
        return d.Origin(d.FLOW, flow_id=flow_id, flow_version=1, step_id=name, run_id="r")

    await reports.message(A, step("s1"), "sent", "opened", "clicked")  # m1
    await reports.message(B, step("s1"), "sent", "bounced")
    await reports.message(A, step("s2"), "sent", "opened", "unsubscribed")
    await reports.message(C, step("s2"))  # skipped: never sent
    await reports.message(B, step("s1"), "sent", "clicked")  # m5
    await reports.message(A, d.Origin(d.TEST), "sent", "clicked")  # a test: never reported
    now = datetime.now(UTC)
    await reports.order(A, "EUR", 2500, now + timedelta(hours=1))  # m1
    await reports.order(A, "USD", 1000, now + timedelta(hours=2))  # m1
    await reports.order(B, "EUR", 500, now + timedelta(days=7))  # beyond the 5 days
    await reports.order(C, "EUR", 900, now + timedelta(hours=1))  # C touched nothing
    await reports.order(B, "EUR", 700, now + timedelta(hours=1))  # m5, B's last click
    # A campaign: A clicks its variant "a" later: A's next order is credited to it.
    m6 = await reports.message(A, d.Origin(d.CAMPAIGN, campaign_id=CAMPAIGN, variant="a"), "sent")
    await reports.message(C, d.Origin(d.CAMPAIGN, campaign_id=CAMPAIGN, variant="b"), "sent")
    await reports.step(m6, "clicked")
    late = now + timedelta(hours=3)
    await reports.order(A, "EUR", 100, late)
    await reports.order(A, "EUR", 100, late - timedelta(days=1))  # before any touch
    await reports.served.settle()

    got = (await reports.stub.GetFlowReport(pb.GetFlowReportRequest(flow_id=flow_id))).report
    assert [r.step_id for r in got.rows] == ["s1", "s2"]
    s1, s2 = got.rows
    assert counts(s1) == (2, 3, 2, 1, 1, 2, 0, 3, 2)
    assert money(s1) == {"EUR": 3200, "USD": 1000}
    assert (s1.open_rate, s1.click_rate, s1.conversion_rate) == (0.5, 1.0, 1.0)
    assert counts(s2) == (1, 1, 1, 0, 1, 0, 1, 0, 0)
    assert (money(s2), s2.open_rate, s2.click_rate) == ({}, 1.0, 0.0)
    assert counts(got.total) == (2, 4, 3, 1, 2, 2, 1, 3, 2)
    assert money(got.total) == {"EUR": 3200, "USD": 1000}
    assert got.total.click_rate == pytest.approx(2 / 3)
    assert (got.attribution.window_days, got.attribution.touch) == (5.0, "click")
    assert sum(day.sent for day in got.days) == 4
    assert sum(day.unique_clicks for day in got.days) == 2
    by_day: dict[datetime, int] = {}
    for placed, amount in ((now + timedelta(hours=1), 3200), (now + timedelta(hours=2), 1000)):
        start = placed.replace(hour=0, minute=0, second=0, microsecond=0)
        by_day[start] = by_day.get(start, 0) + amount
    assert {
        day.day_start_time.ToDatetime(tzinfo=UTC): sum(money(day).values())
        for day in got.days
        if day.revenue
    } == by_day
    by_key = await reports.stub.GetFlowReport(pb.GetFlowReportRequest(key="win-back"))
    assert by_key.report == got

    # The days from and to an instant: the days they fall in only.
    after = now + timedelta(days=2)
    later = await reports.stub.GetFlowReport(
        pb.GetFlowReportRequest(flow_id=flow_id, from_time=ts(after))
    )
    assert not later.report.days and later.report.total == got.total

    campaign = await reports.stub.GetCampaignReport(
        pb.GetCampaignReportRequest(campaign_id=CAMPAIGN)
    )
    a, b = campaign.report.rows
    assert (a.variant, counts(a), money(a)) == ("a", (1, 1, 1, 0, 0, 1, 0, 1, 1), {"EUR": 100})
    assert (b.variant, counts(b), b.conversion_rate) == ("b", (1, 1, 1, 0, 0, 0, 0, 0, 0), 0.0)
    assert campaign.report.total.conversion_rate == 0.5

    # Built afresh from the log (a rebuild, later by the clock): the same rows.
    head = await reports.store.head_position()
    fresh = await readmodels.fresh(reports.store, ReportsProjection(), head)
    assert fresh == await readmodels.snapshot(reports.store.pool, ReportsProjection.schema)
    assert len(fresh["conversions"]) == 4


async def test_unknown_and_empty(reports: Reports) -> None:
    made = await reports.flows.CreateFlow(fpb.CreateFlowRequest(definition=example("win-back")))
    empty = await reports.stub.GetFlowReport(pb.GetFlowReportRequest(flow_id=made.flow.flow_id))
    assert (list(empty.report.rows), counts(empty.report.total)) == ([], (0,) * 9)
    templates = npb_grpc.NotificationsServiceStub(reports.served.channel)
    t = await templates.CreateTemplate(
        npb.CreateTemplateRequest(
            key="news", name="News", channel=epb.CHANNEL_EMAIL, variants=[email()]
        )
    )
    tid = t.template.template_id
    api = d.Origin()
    await reports.message(A, api, "sent", "opened")
    await reports.served.settle()
    none = await reports.stub.GetTemplateReport(pb.GetTemplateReportRequest(template_id=tid))
    assert counts(none.report.total) == (0,) * 9
    sent = await reports.stub.GetTemplateReport(pb.GetTemplateReportRequest(template_id=TEMPLATE))
    assert counts(sent.report.total)[:5] == (1, 1, 1, 0, 1) and not sent.report.rows

    code = grpc.StatusCode
    missing = str(uuid.uuid4())
    cases: list[tuple[Any, grpc.StatusCode, str]] = [
        (pb.GetFlowReportRequest(flow_id=missing), code.NOT_FOUND, "FLOW_NOT_FOUND"),
        (pb.GetFlowReportRequest(key="nope"), code.NOT_FOUND, "FLOW_NOT_FOUND"),
        (pb.GetFlowReportRequest(), code.INVALID_ARGUMENT, "INVALID_FLOW_ID"),
        (pb.GetFlowReportRequest(flow_id="x"), code.INVALID_ARGUMENT, "INVALID_FLOW_ID"),
        (
            pb.GetFlowReportRequest(flow_id=missing, key="win-back"),
            code.INVALID_ARGUMENT,
            "FLOW_AMBIGUOUS",
        ),
        (
            pb.GetFlowReportRequest(
                key="win-back", from_time=Timestamp(seconds=10), to_time=Timestamp(seconds=9)
            ),
            code.INVALID_ARGUMENT,
            "INVALID_RANGE",
        ),
    ]
    for request, status, reason in cases:
        await expect_error(reports.stub.GetFlowReport(request), status, reason)
    await expect_error(
        reports.stub.GetCampaignReport(pb.GetCampaignReportRequest(campaign_id=missing)),
        code.NOT_FOUND,
        "CAMPAIGN_NOT_FOUND",
    )
    await expect_error(
        reports.stub.GetCampaignReport(pb.GetCampaignReportRequest(campaign_id="1")),
        code.INVALID_ARGUMENT,
        "INVALID_CAMPAIGN_ID",
    )
    await expect_error(
        reports.stub.GetTemplateReport(pb.GetTemplateReportRequest(template_id=missing)),
        code.NOT_FOUND,
        "TEMPLATE_NOT_FOUND",
    )


async def test_auditors_read_reports(reports: Reports) -> None:
    await reports.message(A, d.Origin(d.CAMPAIGN, campaign_id=CAMPAIGN), "sent")
    await reports.served.settle()
    async with reports.served.channel_as("auditor") as channel:
        got = await pb_grpc.ReportsServiceStub(channel).GetCampaignReport(
            pb.GetCampaignReportRequest(campaign_id=CAMPAIGN)
        )
    assert [(r.variant, r.sent) for r in got.report.rows] == [("", 1)]
