"""Every RPC of the notifications service, with requests generated from its protobuf descriptor
(shared/testing/fuzz.py), over a real socket against a real PostgreSQL: each answer is OK or an
error its canvas documents (never INTERNAL or UNKNOWN), with one ErrorInfo of domain
notifications.crm, and a failed call appends no event and writes no pipeline row."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from services.notifications.tests.conftest import DOMAIN, Env, create_email
from shared.testing import fuzz

pytestmark = pytest.mark.timeout(300)

CANVAS = fuzz.Canvas.parse(Path(__file__).parents[1] / "README.md")
METHODS = fuzz.methods(pb.DESCRIPTOR.services_by_name["NotificationsService"])


@pytest.fixture
async def samples(env: Env) -> fuzz.Samples:
    """Values that get a call past the first checks: a template, keys, locales, templates good
    and bad."""
    t = await create_email(env, "fuzz-template")
    ada = await env.contacts.RegisterContact(
        cpb.RegisterContactRequest(email="ada@example.com", phone="+33600000001")
    )
    cid = ada.contact.contact_id
    sent = await env.stub.SendMessage(
        pb.SendMessageRequest(
            contact_id=cid,
            template_id=t.template_id,
            kind=epb.MESSAGE_KIND_TRANSACTIONAL,
            data=struct_pb2.Struct(fields={"count": struct_pb2.Value(number_value=2)}),
        )
    )
    return {
        "template_id": [t.template_id],
        "template_key": ["fuzz-template", "missing-template"],
        "contact_id": [cid],
        "message_id": [sent.message.message_id],
        "email": ["ada@example.com", "nobody@example.com"],
        "phone": ["+33600000001"],
        "address": ["qa@example.com", "+33600000002", "https://hooks.example/x", "http://[::1"],
        "webhook_url": ["https://hooks.example/x", "ftp://x", "http://[::1"],
        "key": ["fuzz-template", "fuzz-new", "Bad Key"],
        "name": ["A template"],
        "locale": ["", "fr", "fr-CA", "xx-YY"],
        "subject": ["Hi {{ contact.first_name }}", "{{ x"],
        "text": ["Hello {{ name }}", "{% if %}"],
        "html": ["<p>{{ name }}</p>"],
        "body": ["{{ m }}", '{"a": {{ m }}}'],
        "etag": ["0", "1"],
    }


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@fuzz.SETTINGS
@given(data=st.data())
async def test_every_rpc_answers_as_its_canvas_documents(
    env: Env, samples: fuzz.Samples, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(fuzz.requests(method, samples), label="request")
    await fuzz.assert_answers_as_documented(env.stub, method, request, env.written, CANVAS, DOMAIN)
