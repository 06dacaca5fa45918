"""FlowsService over a real socket on a real PostgreSQL: flows saved from their YAML form,
versioned (earlier versions stay readable), paused, resumed, archived; keys unique; retries
answered once; a bad definition refused with every problem named, nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import json_format

from crm.notifications.v1 import flow_definition_pb2 as dpb
from crm.notifications.v1 import flows_pb2 as pb
from crm.notifications.v1 import flows_pb2_grpc as pb_grpc
from services.notifications import spec
from services.notifications.tests.conftest import expect_error
from shared.eventstore.postgres import PostgresEventStore
from shared.testing.service_env import Served, serving

EXAMPLES = Path(__file__).parents[1] / "examples" / "flows"


@dataclass
class Flows:
    stub: pb_grpc.FlowsServiceStub
    store: PostgresEventStore
    served: Served

    async def events(self) -> int:
        return int(
            await self.store.pool.fetchval(
                "SELECT count(*) FROM eventstore.events"
                " WHERE stream_id LIKE 'flow-%' OR stream_id LIKE 'flowkey-%'"
            )
        )


@pytest.fixture
async def flows(dsn: str) -> AsyncIterator[Flows]:
    store = await PostgresEventStore.connect(dsn, max_size=6)
    try:
        async with serving(spec.SPEC, dsn, store=store) as s:
            yield Flows(pb_grpc.FlowsServiceStub(s.channel), store, s)
    finally:
        await store.close()


def example(name: str) -> dpb.FlowDefinition:
    text = (EXAMPLES / f"{name}.yaml").read_text()
    return json_format.ParseDict(yaml.safe_load(text), dpb.FlowDefinition())


async def test_a_flow_is_saved_read_back_and_listed(flows: Flows) -> None:
    definition = example("abandoned-cart")
    created = (await flows.stub.CreateFlow(pb.CreateFlowRequest(definition=definition))).flow
    assert (created.key, created.version, created.state) == (
        "abandoned-cart",
        1,
        pb.FLOW_STATE_ACTIVE,
    )
    assert created.definition == definition
    got = (await flows.stub.GetFlow(pb.GetFlowRequest(key="abandoned-cart"))).flow
    assert got == created
    await flows.stub.CreateFlow(pb.CreateFlowRequest(definition=example("welcome-series")))
    await flows.served.settle()
    listed = await flows.stub.ListFlows(pb.ListFlowsRequest(page_size=1))
    assert [f.key for f in listed.flows] == ["abandoned-cart"]
    assert listed.flows[0].definition == definition
    rest = await flows.stub.ListFlows(pb.ListFlowsRequest(page_token=listed.next_page_token))
    assert [f.key for f in rest.flows] == ["welcome-series"] and not rest.next_page_token


async def test_versions_pause_resume_and_archive(flows: Flows) -> None:
    first = example("review-request")
    made = (await flows.stub.CreateFlow(pb.CreateFlowRequest(definition=first))).flow
    same = (await flows.stub.UpdateFlow(pb.UpdateFlowRequest(definition=first))).flow
    assert same.version == 1 and same.etag == made.etag  # nothing changed, nothing written
    second = dpb.FlowDefinition()
    second.CopyFrom(first)
    second.steps[0].delay.duration.FromSeconds(3 * 86400)
    await expect_error(
        flows.stub.UpdateFlow(pb.UpdateFlowRequest(definition=second, etag="999")),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    v2 = (await flows.stub.UpdateFlow(pb.UpdateFlowRequest(definition=second, etag=made.etag))).flow
    assert (v2.version, v2.latest_version, v2.definition) == (2, 2, second)
    v1 = (await flows.stub.GetFlow(pb.GetFlowRequest(flow_id=made.flow_id, version=1))).flow
    assert (v1.version, v1.latest_version, v1.definition) == (1, 2, first)

    paused = (await flows.stub.PauseFlow(pb.PauseFlowRequest(key=made.key))).flow
    again = (await flows.stub.PauseFlow(pb.PauseFlowRequest(key=made.key))).flow
    assert paused.state == again.state == pb.FLOW_STATE_PAUSED and again.etag == paused.etag
    resumed = (await flows.stub.ResumeFlow(pb.ResumeFlowRequest(flow_id=made.flow_id))).flow
    assert resumed.state == pb.FLOW_STATE_ACTIVE
    archived = (await flows.stub.ArchiveFlow(pb.ArchiveFlowRequest(key=made.key))).flow
    assert archived.state == pb.FLOW_STATE_ARCHIVED
    before = await flows.events()
    await expect_error(
        flows.stub.UpdateFlow(pb.UpdateFlowRequest(definition=first)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "FLOW_ARCHIVED",
    )
    await expect_error(
        flows.stub.ResumeFlow(pb.ResumeFlowRequest(key=made.key)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "FLOW_ARCHIVED",
    )
    assert await flows.events() == before
    await flows.served.settle()
    assert not (await flows.stub.ListFlows(pb.ListFlowsRequest())).flows
    listed = await flows.stub.ListFlows(pb.ListFlowsRequest(include_archived=True))
    assert [(f.key, f.version, f.state) for f in listed.flows] == [
        ("review-request", 2, pb.FLOW_STATE_ARCHIVED)
    ]


async def test_keys_are_unique_and_a_retry_answers_once(flows: Flows) -> None:
    definition = example("win-back")
    request = pb.CreateFlowRequest(definition=definition, request_id="r-1")
    first = (await flows.stub.CreateFlow(request)).flow
    assert (await flows.stub.CreateFlow(request)).flow.flow_id == first.flow_id
    before = await flows.events()
    await expect_error(
        flows.stub.CreateFlow(pb.CreateFlowRequest(definition=definition, request_id="r-2")),
        grpc.StatusCode.ALREADY_EXISTS,
        "FLOW_KEY_TAKEN",
    )
    assert await flows.events() == before == 2  # FlowCreated and FlowKeyClaimed, once


async def test_a_bad_definition_names_every_problem_and_writes_nothing(flows: Flows) -> None:
    bad = example("welcome-series")
    bad.steps[1].wait_for_event.on_event = "nowhere"
    bad.steps[2].send.template_key = ""
    fields = await expect_error(
        flows.stub.CreateFlow(pb.CreateFlowRequest(definition=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "STEP_UNKNOWN",
    )
    assert fields == [
        "definition.steps[1].wait_for_event.on_event",
        "definition.steps[2].send.template_key",
    ]
    assert await flows.events() == 0


async def test_unknown_and_ambiguous_flows(flows: Flows) -> None:
    await expect_error(
        flows.stub.GetFlow(pb.GetFlowRequest(key="nope")),
        grpc.StatusCode.NOT_FOUND,
        "FLOW_NOT_FOUND",
    )
    await expect_error(
        flows.stub.PauseFlow(pb.PauseFlowRequest(flow_id="not-a-uuid")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FLOW_ID",
    )
    await expect_error(
        flows.stub.GetFlow(pb.GetFlowRequest(flow_id="x", key="y")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FLOW_AMBIGUOUS",
    )
    made = (await flows.stub.CreateFlow(pb.CreateFlowRequest(definition=example("win-back")))).flow
    await expect_error(
        flows.stub.GetFlow(pb.GetFlowRequest(flow_id=made.flow_id, version=3)),
        grpc.StatusCode.NOT_FOUND,
        "FLOW_VERSION_NOT_FOUND",
    )


async def test_a_duration_with_no_json_form_is_invalid(flows: Flows) -> None:
    bad = example("review-request")
    bad.steps[0].delay.duration.seconds = 10**12  # beyond ±10,000 years
    await expect_error(
        flows.stub.CreateFlow(pb.CreateFlowRequest(definition=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "DURATION_INVALID",
    )
    assert await flows.events() == 0


async def test_a_date_trigger_is_checked_on_save(flows: Flows) -> None:
    made = await flows.stub.CreateFlow(pb.CreateFlowRequest(definition=example("birthday")))
    assert made.flow.definition.trigger.date.attribute == "birthday"
    assert made.flow.definition.trigger.date.yearly
    bad = example("birthday")
    bad.key = "birthday-bad"
    bad.trigger.date.attribute = "Birth Day"
    fields = await expect_error(
        flows.stub.CreateFlow(pb.CreateFlowRequest(definition=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ATTRIBUTE_INVALID",
    )
    assert fields == ["definition.trigger.date.attribute"]
    assert await flows.events() == 2  # the first flow's: nothing written for the bad one


async def test_the_runs_of_a_contact_and_of_a_flow_in_pages(flows: Flows) -> None:
    import uuid

    from services.notifications.adapters.flow_engine import FlowEngine
    from shared.eventstore import NewEvent, StreamState
    from shared.projections.runner import ProjectionRunner

    made = await flows.stub.CreateFlow(pb.CreateFlowRequest(definition=example("abandoned-cart")))
    flow_id = made.flow.flow_id
    ada, bob = str(uuid.uuid4()), str(uuid.uuid4())
    carts = [(ada, str(uuid.uuid4())) for _ in range(3)] + [(bob, str(uuid.uuid4()))]
    for contact, cart in carts:
        data = {"contact_id": contact, "cart_id": cart}
        abandoned = NewEvent("crm.orders.v1.CartAbandoned", data)
        await flows.store.append(f"cart-{cart}", [abandoned], StreamState.NO_STREAM)
    await ProjectionRunner(flows.store, FlowEngine(flows.store)).catch_up()

    seen, token = [], ""
    while True:
        page = await flows.stub.ListFlowRuns(
            pb.ListFlowRunsRequest(contact_id=ada, page_size=2, page_token=token)
        )
        seen += page.runs
        if not (token := page.next_page_token):
            break
    assert sorted(r.trigger_key for r in seen) == sorted(c for who, c in carts if who == ada)
    starts = [r.start_time.ToDatetime() for r in seen]
    assert starts == sorted(starts, reverse=True)  # newest first
    run = seen[0]
    assert (run.flow_id, run.flow_version, run.state, run.step) == (
        flow_id,
        1,
        pb.FLOW_RUN_STATE_WAITING,
        "wait-an-hour",
    )
    assert run.trigger_event_type == "crm.orders.v1.CartAbandoned" and run.wake_time.seconds
    of_flow = await flows.stub.ListFlowRuns(pb.ListFlowRunsRequest(flow_id=flow_id))
    assert len(of_flow.runs) == 4
    both = await flows.stub.ListFlowRuns(pb.ListFlowRunsRequest(flow_id=flow_id, contact_id=bob))
    assert [r.contact_id for r in both.runs] == [bob]
    still_open = pb.ListFlowRunsRequest(contact_id=bob, open_only=True)
    assert len((await flows.stub.ListFlowRuns(still_open)).runs) == 1

    await expect_error(
        flows.stub.ListFlowRuns(pb.ListFlowRunsRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CONTACT_OR_FLOW_REQUIRED",
    )
    await expect_error(
        flows.stub.ListFlowRuns(pb.ListFlowRunsRequest(contact_id="nope")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    )
    await expect_error(
        flows.stub.ListFlowRuns(pb.ListFlowRunsRequest(contact_id=ada, page_token="forged")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def test_a_dry_run_shows_what_a_flow_would_have_sent_and_writes_nothing(
    flows: Flows,
) -> None:
    import uuid
    from datetime import UTC, datetime, timedelta

    from google.protobuf.timestamp_pb2 import Timestamp

    from crm.notifications.v1 import events_pb2 as epb
    from crm.notifications.v1 import notifications_pb2 as npb
    from crm.notifications.v1 import notifications_pb2_grpc as npb_grpc
    from shared.eventstore import NewEvent, StreamState

    await flows.stub.CreateFlow(pb.CreateFlowRequest(definition=example("abandoned-cart")))
    templates = npb_grpc.NotificationsServiceStub(flows.served.channel)
    await templates.CreateTemplate(
        npb.CreateTemplateRequest(
            key="cart-reminder",
            name="Cart reminder",
            channel=epb.CHANNEL_EMAIL,
            variants=[epb.TemplateVariant(subject="Your cart", text="Still there")],
        )
    )
    ada, bob = str(uuid.uuid4()), str(uuid.uuid4())
    consent = NewEvent("crm.contacts.v1.ConsentGranted", {"contact_id": ada, "channel": "email"})
    await flows.store.append(f"consent-{ada}", [consent], StreamState.NO_STREAM)
    for who in (ada, bob):
        cart = str(uuid.uuid4())
        data = {"contact_id": who, "cart_id": cart}
        await flows.store.append(
            f"cart-{cart}", [NewEvent("crm.orders.v1.CartAbandoned", data)], StreamState.NO_STREAM
        )
    before = await flows.store.pool.fetchval("SELECT count(*) FROM eventstore.events")
    now = datetime.now(UTC)
    start, end = Timestamp(), Timestamp()
    start.FromDatetime(now - timedelta(hours=1))
    end.FromDatetime(now + timedelta(hours=2))  # the hour's delay ends inside
    answer = await flows.stub.DryRunFlow(
        pb.DryRunFlowRequest(key="abandoned-cart", start_time=start, end_time=end)
    )
    assert (answer.runs_started, answer.events_read) == (2, 3)
    got = sorted((s.contact_id, s.step, s.outcome, s.reason) for s in answer.steps)
    assert got == sorted(
        [
            (ada, "reminder", epb.OUTCOME_SEND, ""),
            (bob, "reminder", epb.OUTCOME_SKIP, "NO_CONSENT"),
        ]
    )
    assert all(s.channel == epb.CHANNEL_EMAIL for s in answer.steps)
    assert dict(answer.counts) == {"OUTCOME_SEND": 1, "OUTCOME_SKIP": 1, "NO_CONSENT": 1}
    assert await flows.store.pool.fetchval("SELECT count(*) FROM eventstore.events") == before

    draft = example("abandoned-cart")
    draft.steps[1].send.template_key = "no-such-template"
    answer = await flows.stub.DryRunFlow(
        pb.DryRunFlowRequest(definition=draft, start_time=start, end_time=end, max_steps=1)
    )
    assert [s.reason for s in answer.steps] == ["TEMPLATE_NOT_FOUND"] and answer.truncated

    await expect_error(
        flows.stub.DryRunFlow(pb.DryRunFlowRequest(key="abandoned-cart", start_time=start)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "WINDOW_REQUIRED",
    )
    await expect_error(
        flows.stub.DryRunFlow(
            pb.DryRunFlowRequest(key="abandoned-cart", start_time=end, end_time=start)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_WINDOW",
    )
    await expect_error(
        flows.stub.DryRunFlow(pb.DryRunFlowRequest(key="nope", start_time=start, end_time=end)),
        grpc.StatusCode.NOT_FOUND,
        "FLOW_NOT_FOUND",
    )
