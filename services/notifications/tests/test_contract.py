"""Contract test: every event type the notifications service publishes is produced and decodes
as its message in protos/crm/notifications/v1/events.proto, the way a consumer decodes it."""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf.message import Message

from crm.notifications.v1 import campaigns_pb2, events_pb2
from crm.notifications.v1 import notifications_pb2 as pb
from services.notifications.adapters.intake_tables import PostgresIntakeTables
from services.notifications.application.flows import FlowCommands
from services.notifications.application.intake import Intake
from services.notifications.application.tracking import ONE_CLICK, Evidence
from services.notifications.domain import policy
from services.notifications.domain.bounces import Report
from services.notifications.domain.flows import flow
from services.notifications.domain.variant import SMS
from services.notifications.tests.campaign_env import campaign_env
from services.notifications.tests.conftest import Env, create_email, email
from services.notifications.tests.flow_env import Env as FlowEnv
from services.notifications.tests.pipeline_env import Pipe
from services.notifications.tests.test_flow_definitions import EXAMPLES, json_form
from services.notifications.tests.test_tracking import (
    TOKENS,
    UNSUBSCRIBE,
    FakeLedger,
    sent_with_links,
    tracking_of,
)
from shared.eventstore.postgres import PostgresEventStore
from shared.testing import rpc
from shared.testing.events import read_everything

NOT_YET: set[str] = set()  # declared for a later slice, published by nothing yet
CAMPAIGN_EVENTS = {
    "CampaignCreated",
    "CampaignScheduled",
    "CampaignStarted",
    "CampaignPaused",
    "CampaignResumed",
    "CampaignCompleted",
    "CampaignCancelled",
}
PARTS = {  # messages inside events
    "TemplateVariant",
    "Trigger",
    "ConsentUsed",
    "QuietHours",
    "CampaignVariant",
    "CampaignDefinition",
    "CampaignSchedule",
    "LocalSend",
    "CampaignTally",
}


async def _decoded(store: PostgresEventStore, categories: list[str]) -> list[Message]:
    return [
        rpc.published_message(e, events_pb2)
        for e in await read_everything(store, categories=categories)
    ]


async def test_every_template_event_decodes_as_its_message(env: Env) -> None:
    t = await create_email(env, "contract")
    await env.stub.UpdateTemplate(
        pb.UpdateTemplateRequest(template_id=t.template_id, name="v2", variants=[email()])
    )
    await env.stub.ArchiveTemplate(pb.ArchiveTemplateRequest(template_id=t.template_id))
    seen = set()
    for message in await _decoded(env.store, ["template", "templatekey"]):
        seen.add(message.DESCRIPTOR.name)
        if isinstance(message, events_pb2.TemplateCreated):
            assert message.channel == events_pb2.CHANNEL_EMAIL
            assert [v.locale for v in message.variants] == ["", "fr"]
    assert seen == {"TemplateCreated", "TemplateRevised", "TemplateArchived", "TemplateKeyClaimed"}


async def test_every_message_event_decodes_as_its_message(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template()
    await pipe.send(t)  # SEND, then dispatched and sent
    await pipe.dispatcher.tick()
    await pipe.send(t, kind=policy.TRANSACTIONAL)  # rejected: failed
    pipe.delivery.status = "rejected"
    await pipe.dispatcher.tick()
    await pipe.send(t)  # SKIP SMART_SENDING
    pipe.clock.now = pipe.clock.now.replace(hour=21, minute=30)
    await pipe.send(await pipe.template("sms", SMS), kind=policy.TRANSACTIONAL)  # DEFER
    seen = set()
    for message in await _decoded(pipe.store, ["message"]):
        seen.add(message.DESCRIPTOR.name)
        if isinstance(message, events_pb2.MessageDecided):
            assert message.kind in (
                events_pb2.MESSAGE_KIND_MARKETING,
                events_pb2.MESSAGE_KIND_TRANSACTIONAL,
            )
            if message.outcome == events_pb2.OUTCOME_DEFER:
                assert message.quiet_hours.start == "21:00"
                assert message.defer_until_time.seconds > message.decide_time.seconds
            assert message.consent.policy_version == "2026-01"
    assert seen == {"MessageDecided", "MessageDispatched", "MessageSent", "MessageFailed"}


async def test_every_flow_event_decodes_as_its_message(dsn: str) -> None:
    store = await PostgresEventStore.connect(dsn, max_size=4)
    try:
        flows = FlowCommands(store)
        definition = json_form((EXAMPLES[0].parent / "win-back.yaml").read_text())
        made = await flows.create(definition)
        changed = {**definition, "name": "Win-back, v2"}
        await flows.update(changed)
        for decide in (flow.decide_pause, flow.decide_resume, flow.decide_archive):
            await flows.change(made.flow_id, decide)
        seen = set()
        for message in await _decoded(store, ["flow", "flowkey"]):
            seen.add(message.DESCRIPTOR.name)
            if isinstance(message, events_pb2.FlowRevised):
                assert message.definition.name == "Win-back, v2" and message.version == 2
                assert message.definition.re_entry.days == 90
    finally:
        await store.close()
    assert seen == {
        "FlowCreated",
        "FlowRevised",
        "FlowPaused",
        "FlowResumed",
        "FlowArchived",
        "FlowKeyClaimed",
    }


async def test_every_tracking_event_decodes_as_its_message(pipe: Pipe) -> None:
    track = tracking_of(pipe, FakeLedger(pipe))
    pipe.contacts.add()
    mid = await sent_with_links(pipe)
    await track.open(TOKENS.open_token(mid))
    await track.click(TOKENS.click_token(mid, 0))
    await track.unsubscribe_by(UNSUBSCRIBE.token(mid), ONE_CLICK, Evidence("192.0.2.1", "x"))
    seen = {}
    for message in await _decoded(pipe.store, ["message"]):
        seen[message.DESCRIPTOR.name] = message
    clicked, unsubscribed = seen["MessageClicked"], seen["MessageUnsubscribed"]
    assert (clicked.link, clicked.host) == (0, "shop.example")  # type: ignore[attr-defined]
    assert unsubscribed.channel == events_pb2.CHANNEL_EMAIL  # type: ignore[attr-defined]
    assert unsubscribed.changed  # type: ignore[attr-defined]
    assert set(seen) == {"MessageDecided", "MessageOpened", "MessageClicked", "MessageUnsubscribed"}


def test_the_published_events_are_the_ones_produced_above() -> None:
    published = set(events_pb2.DESCRIPTOR.message_types_by_name) - PARTS - NOT_YET
    assert published == {
        "TemplateCreated",
        "TemplateRevised",
        "TemplateArchived",
        "TemplateKeyClaimed",
        "MessageDecided",
        "MessageDispatched",
        "MessageSent",
        "MessageFailed",
        "MessageDelivered",
        "MessageBounced",
        "MessageComplained",
        "FlowCreated",
        "FlowRevised",
        "FlowPaused",
        "FlowResumed",
        "FlowArchived",
        "FlowKeyClaimed",
        "MessageOpened",
        "MessageClicked",
        "MessageUnsubscribed",
        "FlowRunStarted",
        "FlowRunStepEntered",
        "FlowRunWaiting",
        "FlowRunAsked",
        "FlowRunEnded",
        *CAMPAIGN_EVENTS,
    }


async def test_every_flow_run_event_decodes_as_its_message(flow_env: FlowEnv) -> None:
    env = flow_env
    await env.flow("abandoned-cart")
    vip = {
        "key": "vip-thanks",
        "name": "VIP thanks",
        "trigger": {"event": {"event_type": "crm.orders.v1.OrderPlaced"}},
        "steps": [
            {
                "id": "check",
                "condition": {"in_segment": "vip", "if_true": "thank", "if_false": "done"},
            },
            {"id": "thank", "send": {"template_key": "vip-thanks"}, "next": "done"},
            {"id": "done", "exit": {}},
        ],
    }
    await FlowCommands(env.store).create(vip)
    cart, order = str(uuid.uuid4()), str(uuid.uuid4())
    await env.publish(f"cart-{cart}", "crm.orders.v1.CartAbandoned", cart_id=cart)
    await env.publish(f"order-{order}", "crm.orders.v1.OrderPlaced", order_id=order)
    seen: dict[str, Message] = {}
    for message in await _decoded(env.store, ["flowrun"]):
        seen.setdefault(message.DESCRIPTOR.name, message)
    started = seen["FlowRunStarted"]
    assert started.trigger["cart_id"] == cart  # type: ignore[attr-defined]
    assert started.trigger_key == cart  # type: ignore[attr-defined]
    assert seen["FlowRunWaiting"].until_time.seconds > 0  # type: ignore[attr-defined]
    assert set(seen) == {
        "FlowRunStarted",
        "FlowRunStepEntered",
        "FlowRunWaiting",
        "FlowRunAsked",
        "FlowRunEnded",
    }


class Suppressed:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def suppress(
        self, contact_id: str, channel: str, reason: str, note: str, request_id: str
    ) -> bool:
        self.calls.append((contact_id, channel, reason))
        return True


async def test_every_intake_event_decodes_as_its_message(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template()
    bounced = await pipe.send(t, kind=policy.TRANSACTIONAL, request_id="bounced")
    complained = await pipe.send(t, kind=policy.TRANSACTIONAL, request_id="complained")
    sms = await pipe.send(await pipe.template("sms", SMS), kind=policy.TRANSACTIONAL)
    pipe.delivery.provider_ids[sms.message_id] = "SM0001"
    await pipe.dispatcher.tick()
    contacts = Suppressed()
    intake = Intake(pipe.store, PostgresIntakeTables(pipe.store, pipe.store.pool), contacts)
    reports = [
        Report(bounced.message_id, "soft_bounce", "4.2.2"),
        Report(bounced.message_id, "hard_bounce", "5.1.1", "550 <address> unknown"),
        Report(complained.message_id, "complaint", "", "feedback-type abuse"),
    ]
    await intake.reports(reports, "json")
    await intake.sms_status("SM0001", "delivered", "")
    seen: dict[str, list[Any]] = {}
    for message in await _decoded(pipe.store, ["message"]):
        seen.setdefault(message.DESCRIPTOR.name, []).append(message)
    soft, hard = seen["MessageBounced"]
    assert (soft.bounce_type, soft.soft_bounce_count, soft.suppress) == (
        events_pb2.BOUNCE_TYPE_SOFT,
        1,
        False,
    )
    assert (hard.bounce_type, hard.status, hard.suppress) == (
        events_pb2.BOUNCE_TYPE_HARD,
        "5.1.1",
        True,
    )
    [complaint] = seen["MessageComplained"]
    assert (complaint.message_id, complaint.source) == (complained.message_id, "json")
    [delivered] = seen["MessageDelivered"]
    assert (delivered.message_id, delivered.provider_id) == (sms.message_id, "SM0001")
    assert [c[2] for c in contacts.calls] == [
        "SUPPRESSION_REASON_HARD_BOUNCE",
        "SUPPRESSION_REASON_COMPLAINT",
    ]


async def test_every_campaign_event_decodes_as_its_message(dsn: str) -> None:
    async with campaign_env(dsn) as env:
        await env.template("sale")
        await env.segment("vip", "vip")
        member = await env.contact(["vip"])
        await env.settle()
        definition = {
            "name": "Sale",
            "include_segments": ["vip"],
            "variants": [events_pb2.CampaignVariant(name="a", template_key="sale", weight=2)],
            "holdout_basis_points": 100,
        }
        sent = (await env.create(**definition)).campaign_id
        local = events_pb2.LocalSend(day="2099-01-02", time_of_day="09:00")
        for request in (
            campaigns_pb2.ScheduleCampaignRequest(
                campaign_id=sent, schedule=events_pb2.CampaignSchedule(local=local)
            ),
            campaigns_pb2.PauseCampaignRequest(campaign_id=sent),
            campaigns_pb2.ResumeCampaignRequest(campaign_id=sent),
            campaigns_pb2.ScheduleCampaignRequest(
                campaign_id=sent, schedule=events_pb2.CampaignSchedule(now=True)
            ),
        ):
            await getattr(env.stub, type(request).__name__.removesuffix("Request"))(request)
        await env.settle()
        engine = env.engine()
        for _ in range(3):
            await engine.tick()
        cancelled = (await env.create(**definition)).campaign_id
        await env.stub.CancelCampaign(campaigns_pb2.CancelCampaignRequest(campaign_id=cancelled))
        seen = set()
        for message in await _decoded(env.store, ["campaign"]):
            seen.add(message.DESCRIPTOR.name)
            if isinstance(message, events_pb2.CampaignCreated):
                assert message.definition.variants[0].weight == 2
            if isinstance(message, events_pb2.CampaignScheduled) and message.local_day:
                assert (message.local_day, message.local_time) == ("2099-01-02", "09:00")
                assert message.send_time.ToJsonString() == "2099-01-01T19:00:00Z"
            if isinstance(message, events_pb2.CampaignStarted):
                assert message.audience_size == 1 and message.start_time.seconds > 0
            if isinstance(message, events_pb2.CampaignCompleted):
                tally = message.tally
                assert tally.sent + tally.held_out == 1, member
    assert seen == CAMPAIGN_EVENTS
