"""Contract test: every event type the notifications service publishes is produced and decodes
as its message in protos/crm/notifications/v1/events.proto, the way a consumer decodes it."""

from __future__ import annotations

from google.protobuf.message import Message

from crm.notifications.v1 import events_pb2
from crm.notifications.v1 import notifications_pb2 as pb
from services.notifications.application.flows import FlowCommands
from services.notifications.application.tracking import ONE_CLICK, Evidence
from services.notifications.domain import policy
from services.notifications.domain.flows import flow
from services.notifications.domain.variant import SMS
from services.notifications.tests.conftest import Env, create_email, email
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

# Declared for a later slice (SMS status callbacks), published by nothing yet.
NOT_YET = {"MessageDelivered"}
PARTS = {"TemplateVariant", "Trigger", "ConsentUsed", "QuietHours"}  # messages inside events


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
        "FlowCreated",
        "FlowRevised",
        "FlowPaused",
        "FlowResumed",
        "FlowArchived",
        "FlowKeyClaimed",
        "MessageOpened",
        "MessageClicked",
        "MessageUnsubscribed",
    }
