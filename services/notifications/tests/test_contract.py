"""Contract test: every event type the notifications service publishes is produced and decodes
as its message in protos/crm/notifications/v1/events.proto, the way a consumer decodes it."""

from __future__ import annotations

from crm.notifications.v1 import events_pb2
from crm.notifications.v1 import notifications_pb2 as pb
from services.notifications.tests.conftest import Env, create_email, email
from shared.testing import rpc
from shared.testing.events import read_everything


async def test_every_published_event_decodes_as_its_message(env: Env) -> None:
    t = await create_email(env, "contract")
    await env.stub.UpdateTemplate(
        pb.UpdateTemplateRequest(template_id=t.template_id, name="v2", variants=[email()])
    )
    await env.stub.ArchiveTemplate(pb.ArchiveTemplateRequest(template_id=t.template_id))
    seen = set()
    for e in await read_everything(env.store, categories=["template", "templatekey"]):
        message = rpc.published_message(e, events_pb2)
        seen.add(message.DESCRIPTOR.name)
        if isinstance(message, events_pb2.TemplateCreated):
            assert message.channel == events_pb2.CHANNEL_EMAIL
            assert [v.locale for v in message.variants] == ["", "fr"]
    published = set(events_pb2.DESCRIPTOR.message_types_by_name) - {"TemplateVariant"}
    assert seen == published
