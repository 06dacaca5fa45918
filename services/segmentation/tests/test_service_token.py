"""Segmentation reads personal facts from contacts with its service token: with it, one
BatchGetContactVersions call is recorded as the service's read; with a token contacts does not
know, the read fails as CONTACTS_UNAVAILABLE (upstream UNAUTHENTICATED), never as facts of an
empty contact."""

from __future__ import annotations

import pytest

from crm.audit.v1 import events_pb2 as audit_pb2
from services.segmentation.adapters.contacts_client import GrpcContactVersions
from services.segmentation.tests.conftest import Env
from services.segmentation.tests.helpers import register
from shared.grpckit import errors as ge
from shared.grpckit.audit import CATEGORY
from shared.testing import tokens
from shared.testing.events import read_everything
from shared.testing.rpc import published_message

pytestmark = pytest.mark.timeout(60)


async def test_personal_facts_are_read_with_the_service_token(env: Env) -> None:
    contact = await register(env)
    await env.settle()  # the engine has read its facts: no read of its own from here on
    target = env.contacts_target
    right = GrpcContactVersions(target, tokens.SERVICE_TOKEN)
    wrong = GrpcContactVersions(target, "not-the-service-token")
    try:
        before = len(await read_everything(env.store, categories=[CATEGORY]))
        facts = await right.personal([(contact, 0)])
        assert facts[(contact, 0)].email_domain == "shop.example"
        events = (await read_everything(env.store, categories=[CATEGORY]))[before:]
        [read] = [published_message(e, audit_pb2) for e in events]
        assert isinstance(read, audit_pb2.PersonalDataRead)
        assert read.method == "crm.contacts.v1.ContactsService/BatchGetContactVersions"
        assert (read.principal, list(read.contact_ids)) == (tokens.NAMES["service"], [contact])
        with pytest.raises(ge.Unavailable) as info:
            await wrong.personal([(contact, 0)])
        assert info.value.reason == "CONTACTS_UNAVAILABLE"
        assert info.value.metadata["upstream_code"] == "UNAUTHENTICATED"
    finally:
        await right.close()
        await wrong.close()
