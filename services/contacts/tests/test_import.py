"""Bulk import over the client-streaming RPC, against the real database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from crm.contacts.v1 import contacts_pb2 as pb
from services.contacts.tests.conftest import Env
from services.contacts.tests.helpers import expect_error, register
from shared.testing.events import read_everything


def rows(n: int, start: int = 0, **extra: object) -> list[pb.ImportRow]:
    return [
        pb.ImportRow(
            row_number=i + 1,
            external_id=f"shop-{i}",
            email=f"c{i}@shop.io",
            first_name=f"C{i}",
            tags=["imported"],
            **extra,  # type: ignore[arg-type]
        )
        for i in range(start, start + n)
    ]


async def stream(*batches: list[pb.ImportRow]) -> AsyncIterator[pb.ImportContactsRequest]:
    for b in batches:
        yield pb.ImportContactsRequest(rows=b)


async def test_import_creates_then_rerun_changes_nothing_then_updates(env: Env) -> None:
    first = await env.stub.ImportContacts(stream(rows(120)[:70], rows(120)[70:]))
    assert (first.created, first.updated, first.unchanged, first.failed) == (120, 0, 0, 0)
    events = await env.event_count()
    again = await env.stub.ImportContacts(stream(rows(120)))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 120)
    assert await env.event_count() == events  # idempotent: nothing appended
    changed = rows(3, last_name="Imported")
    upd = await env.stub.ImportContacts(stream(changed))
    assert (upd.created, upd.updated, upd.unchanged) == (0, 3, 0)
    await env.settle()
    found = await env.stub.FindContact(pb.FindContactRequest(external_id="shop-1"))
    assert (found.contact.first_name, found.contact.last_name) == ("C1", "Imported")
    assert found.contact.email == "c1@shop.io" and list(found.contact.tags) == ["imported"]
    page_events = await read_everything(env.store, categories=["contact"])
    assert all(e.metadata["backfill"] is True and e.metadata["import_id"] for e in page_events)


async def test_bad_rows_are_reported_by_number_and_the_rest_imported(env: Env) -> None:
    holder = await register(env, email="taken@shop.io")
    other = await register(env, external_id="ext-owned")
    batch = [
        pb.ImportRow(row_number=1, email="ok1@shop.io"),
        pb.ImportRow(row_number=2, email="not-an-email"),
        pb.ImportRow(row_number=3, first_name="no identity"),
        pb.ImportRow(row_number=4, email="ok2@shop.io", tags=["Bad Tag"]),
        pb.ImportRow(row_number=5, phone="12"),
        pb.ImportRow(row_number=6, email="taken@shop.io", external_id="ext-owned"),
        pb.ImportRow(row_number=7, email="ok3@shop.io", time_zone="Nowhere/Land"),
        pb.ImportRow(row_number=8, email="ok4@shop.io", first_name="x" * 300),
        pb.ImportRow(row_number=9, email="ok5@shop.io"),
    ]
    r = await env.stub.ImportContacts(stream(batch))
    assert (r.created, r.failed) == (2, 7)
    assert [(e.row_number, e.reason) for e in r.errors] == [
        (2, "INVALID_EMAIL"),
        (3, "IDENTITY_REQUIRED"),
        (4, "INVALID_TAG"),
        (5, "INVALID_PHONE"),
        (6, "IDENTITY_TAKEN"),
        (7, "INVALID_TIME_ZONE"),
        (8, "FIELD_TOO_LONG"),
    ]
    await env.settle()
    for email in ("ok1@shop.io", "ok5@shop.io"):
        await env.stub.FindContact(pb.FindContactRequest(email=email))
    assert holder.email == "taken@shop.io" and other.external_id == "ext-owned"


async def test_a_file_repeating_an_identity_keeps_file_order(env: Env) -> None:
    batch = [
        pb.ImportRow(row_number=1, external_id="dup-1", first_name="First"),
        pb.ImportRow(row_number=2, external_id="dup-1", first_name="Second", email="d@shop.io"),
    ]
    r = await env.stub.ImportContacts(stream(batch))
    assert (r.created, r.updated, r.failed) == (1, 1, 0)
    await env.settle()
    found = await env.stub.FindContact(pb.FindContactRequest(external_id="dup-1"))
    assert (found.contact.first_name, found.contact.email) == ("Second", "d@shop.io")


async def test_oversized_message_is_rejected_and_nothing_written(env: Env) -> None:
    before = await env.event_count()
    await expect_error(
        env.stub.ImportContacts(stream(rows(1001))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOO_MANY_ROWS",
    )
    assert await env.event_count() == before
