"""Every RPC of ContactsService and ConsentService, with requests generated from their protobuf
descriptors (shared/testing/fuzz.py), over a real socket against a real PostgreSQL: each answer
is OK or an error the canvas documents (never INTERNAL or UNKNOWN), with one ErrorInfo of
domain contacts.crm, and a failed call appends no event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from crm.contacts.v1 import consent_pb2, contacts_pb2
from services.contacts.tests.conftest import ConsentEnv, Env
from shared.testing import fuzz

pytestmark = pytest.mark.timeout(300)

DOMAIN = "contacts.crm"
CANVAS = fuzz.Canvas.parse(Path(__file__).parents[1] / "README.md")
CONTACTS = fuzz.methods(contacts_pb2.DESCRIPTOR.services_by_name["ContactsService"])
CONSENT = fuzz.methods(consent_pb2.DESCRIPTOR.services_by_name["ConsentService"])
FUZZ = fuzz.SETTINGS
IDENTITIES = {
    "email": ["ada@example.com", "grace@example.com", "not-an-email"],
    "phone": ["+14155550123", "555"],
    "external_id": ["shop-42"],
    "tags": ["vip", "Bad Tag"],
    "tag": ["vip"],
    "locale": ["en-GB"],
    "time_zone": ["Europe/Paris"],
    "paths": ["email", "tags", "first_name", "attributes.size", "nope"],
}


async def _check(stub: Any, method: MethodDescriptor, request: Any, count: Any) -> None:
    await fuzz.assert_answers_as_documented(stub, method, request, count, CANVAS, DOMAIN)


@pytest.fixture
async def contact_samples(env: Env) -> fuzz.Samples:
    """Two registered contacts (one with a merge to undo) and plausible identities."""
    ids = []
    for email in ("ada@example.com", "grace@example.com"):
        r = await env.stub.RegisterContact(contacts_pb2.RegisterContactRequest(email=email))
        ids.append(r.contact.contact_id)
    merged = await env.stub.RegisterContact(
        contacts_pb2.RegisterContactRequest(phone="+14155550199")
    )
    await env.stub.MergeContacts(
        contacts_pb2.MergeContactsRequest(survivor_id=ids[0], merged_id=merged.contact.contact_id)
    )
    ids.append(merged.contact.contact_id)
    return {
        **IDENTITIES,
        **dict.fromkeys(("contact_id", "survivor_id", "merged_id"), ids),
        "etag": ["0", "1", "2"],
    }


@pytest.fixture
async def consent_samples(consent_env: ConsentEnv) -> fuzz.Samples:
    contact = await consent_env.contact()
    return {
        "contact_id": [contact],
        "ip": ["203.0.113.7", "nope"],
        "source": ["checkout"],
        "token": ["bm90LWEtdG9rZW4"],
    }


@pytest.mark.parametrize("method", CONTACTS, ids=lambda m: m.name)
@FUZZ
@given(data=st.data())
async def test_every_contacts_rpc_answers_as_the_canvas_documents(
    env: Env,
    contact_samples: fuzz.Samples,
    method: MethodDescriptor,
    data: st.DataObject,
) -> None:
    request = data.draw(fuzz.requests(method, contact_samples), label="request")
    await _check(env.stub, method, request, env.event_count)


@pytest.mark.parametrize("method", CONSENT, ids=lambda m: m.name)
@FUZZ
@given(data=st.data())
async def test_every_consent_rpc_answers_as_the_canvas_documents(
    consent_env: ConsentEnv,
    consent_samples: fuzz.Samples,
    method: MethodDescriptor,
    data: st.DataObject,
) -> None:
    request = data.draw(fuzz.requests(method, consent_samples), label="request")
    await _check(consent_env.stub, method, request, consent_env.event_count)
