"""Reports from the events the service's own application writes: SendMessage with a flow step's
and a campaign variant's origin, the dispatcher's sends, a tracked click, a bounce report, and an
order as orders publishes it (the JSON form of crm.orders.v1.OrderPlaced): the read model credits
the order to the clicked message, and the report says so."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf import json_format

from crm.orders.v1 import events_pb2 as oepb
from services.notifications.adapters.intake_tables import PostgresIntakeTables
from services.notifications.adapters.reports_queries import CAMPAIGN, FLOW, ReportQueries
from services.notifications.adapters.reports_readmodel import PLACED, ReportsProjection
from services.notifications.application.intake import Intake
from services.notifications.domain import decision as d
from services.notifications.domain import policy
from services.notifications.domain.bounces import Report
from services.notifications.domain.variant import EMAIL, Variant
from services.notifications.tests.pipeline_env import ADA, Pipe
from services.notifications.tests.test_intake import FakeSuppressing
from services.notifications.tests.test_tracking import HTML, TOKENS, FakeLedger, tracking_of
from shared.eventstore import NewEvent, StreamState
from shared.projections.runner import ProjectionRunner

FLOW_ID, CAMPAIGN_ID = str(uuid.uuid4()), str(uuid.uuid4())


async def test_an_order_after_a_click_is_the_flow_steps_conversion(pipe: Pipe) -> None:
    pipe.contacts.add()
    track = tracking_of(pipe, FakeLedger(pipe))
    t = await pipe.templates.create(
        "news", EMAIL, "News", [Variant("", subject="Hi", text="Tea", html=HTML)]
    )
    step = d.Origin(d.FLOW, flow_id=FLOW_ID, flow_version=3, step_id="nudge", run_id="run-1")
    clicked = await pipe.send(t, origin=step, request_id="flow")
    variant = d.Origin(d.CAMPAIGN, campaign_id=CAMPAIGN_ID, variant="b")
    bounced = await pipe.send(t, kind=policy.TRANSACTIONAL, origin=variant, request_id="camp")
    await pipe.dispatcher.tick()
    await track.click(TOKENS.click_token(clicked.message_id, 0))
    intake = Intake(
        pipe.store, PostgresIntakeTables(pipe.store, pipe.store.pool), FakeSuppressing()
    )
    await intake.reports([Report(bounced.message_id, "hard_bounce", "5.1.1")], "json")
    placed = oepb.OrderPlaced(
        order_id=str(uuid.uuid4()), contact_id=ADA, currency="JPY", total=4800
    )
    placed.place_time.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    data = json_format.MessageToDict(placed, preserving_proto_field_name=True)
    await pipe.store.append(
        f"order-{placed.order_id}", [NewEvent(PLACED, data)], StreamState.NO_STREAM
    )
    await ProjectionRunner(pipe.store, ReportsProjection()).catch_up()

    queries = ReportQueries(pipe.store.pool)
    flow = await queries.report(FLOW, FLOW_ID)
    [row] = flow.rows
    assert (row.group, row.sent, row.delivered, row.clicks) == ("nudge", 1, 1, 1)
    assert (row.conversions, row.converted, row.revenue) == (1, 1, {"JPY": 4800})
    campaign = await queries.report(CAMPAIGN, CAMPAIGN_ID)
    [row] = campaign.rows
    assert (row.group, row.sent, row.delivered, row.bounced, row.conversions) == ("b", 1, 0, 1, 0)
