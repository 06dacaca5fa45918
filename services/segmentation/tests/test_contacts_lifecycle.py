"""Segmentation follows what happens to contacts: personal facts read as of each event and
forgotten on erasure (nothing personal left in segmentation's tables or events), and merges
that move a merged contact's orders to the survivor (and back on unmerge)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import field_mask_pb2

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import events_pb2 as cepb
from services.segmentation.tests.conftest import Env
from services.segmentation.tests.helpers import create, member

pytestmark = pytest.mark.timeout(120)


async def segmentation_rows_mention(env: Env, needle: str) -> list[str]:
    """Every table of segmentation's schemas whose rows contain ``needle`` as text."""
    tables = await env.store.pool.fetch(
        """SELECT table_schema || '.' || table_name FROM information_schema.tables
           WHERE table_schema LIKE 'segmentation%' AND table_type = 'BASE TABLE'"""
    )
    found = []
    for (table,) in tables:
        hit = await env.store.pool.fetchval(
            f"SELECT count(*) FROM {table} t WHERE t::text ILIKE $1", f"%{needle}%"
        )
        if hit:
            found.append(table)
    return found


async def test_personal_facts_are_read_as_of_the_event_and_forgotten_on_erasure(env: Env) -> None:
    domain = f"d{uuid.uuid4().hex[:8]}.example"
    seg = await create(env, f"email_domain = '{domain}' AND attributes.size = 'XL'")
    request = cpb.RegisterContactRequest(email=f"ada@{domain}", first_name="Adalind")
    request.attributes["size"].CopyFrom(cepb.AttributeValue(string_value="XL"))
    contact = (await env.contacts.RegisterContact(request)).contact.contact_id
    await env.settle()
    assert await member(env, contact, seg.segment_id)
    # A later change is read as of its own event: the earlier one stays what it was.
    changed = cpb.Contact(contact_id=contact)
    changed.attributes["size"].CopyFrom(cepb.AttributeValue(string_value="S"))
    mask = field_mask_pb2.FieldMask(paths=["attributes.size"])
    await env.contacts.UpdateContact(cpb.UpdateContactRequest(contact=changed, update_mask=mask))
    await env.settle()
    assert not await member(env, contact, seg.segment_id)
    assert await segmentation_rows_mention(env, domain)  # the facts hold the domain now
    await env.contacts.EraseContact(cpb.EraseContactRequest(contact_id=contact, reason="gdpr"))
    await env.settle()
    # Only the rule itself still names the domain (it names facts, not a person).
    assert set(await segmentation_rows_mention(env, domain)) == {
        "segmentation_rm.segments",
        "segmentation_facts.segments",
    }
    assert await segmentation_rows_mention(env, "Adalind") == []
    for e in await env.store.read_stream(f"segmentmembership-{contact}"):
        assert domain not in str(e.data) and "Adalind" not in str(e.data)


async def test_a_merge_counts_the_merged_orders_for_the_survivor_and_unmerge_gives_them_back(
    env: Env,
) -> None:
    tag = uuid.uuid4().hex[:8]
    seg = await create(env, "orders_count >= 2")
    survivor = (
        await env.contacts.RegisterContact(cpb.RegisterContactRequest(email=f"s-{tag}@x.example"))
    ).contact.contact_id
    merged = (
        await env.contacts.RegisterContact(cpb.RegisterContactRequest(email=f"m-{tag}@x.example"))
    ).contact.contact_id
    day = datetime.now(UTC) - timedelta(days=1)
    await env.order(survivor, day)
    await env.order(merged, day)
    await env.order(merged, day)
    await env.settle()
    assert not await member(env, survivor, seg.segment_id)
    assert await member(env, merged, seg.segment_id)
    await env.contacts.MergeContacts(
        cpb.MergeContactsRequest(survivor_id=survivor, merged_id=merged)
    )
    await env.settle()
    assert await member(env, survivor, seg.segment_id)  # 3 orders now
    assert not await member(env, merged, seg.segment_id)  # a merged contact is in nothing
    await env.contacts.UnmergeContacts(cpb.UnmergeContactsRequest(merged_id=merged))
    await env.settle()
    assert not await member(env, survivor, seg.segment_id)
    assert await member(env, merged, seg.segment_id)
