"""The `crm` operator commands against the real suite (tests/admin/conftest.py): output parsed
from --json, exit codes 0 (ok), 1 (not found, failed, or a failed check) and 2 (usage or
connection)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf import field_mask_pb2

from crm.contacts.v1 import contacts_pb2 as cpb
from crm.orders.v1 import events_pb2 as oepb
from crm.orders.v1 import orders_pb2 as opb
from crm.segmentation.v1 import segmentation_pb2 as spb
from services.registry import SERVICES
from shared.domain.timestamps import timestamp_text
from shared.testing import tokens
from tests.admin.conftest import Suite, crm


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_status_lists_every_projection_of_every_service(suite: Suite) -> None:
    await suite.activity()
    await suite.settled()
    code, out, errors = await crm("projections", "status", "--json", *suite.targets())
    assert code == 0, errors
    (report,) = lines(out)
    services = {s["service"]: s for s in report["services"]}
    assert list(services) == [spec.name for spec in SERVICES] and report["errors"] == []
    head = await suite.store.head_position()
    for spec in SERVICES:
        listed = {p["name"]: p for p in services[spec.name]["projections"]}
        assert {p.name for p in spec.projections()} <= set(listed)
        for p in listed.values():
            assert p["state"] == "STATE_RUNNING" and p["checkpoint_position"] == head
            assert p["lag_events"] == 0 and p["parked_count"] == 0 and p["leader"]["pid"] > 0
    code, _, human = await crm("projections", "status", "--service", "orders", *suite.targets())
    assert code == 0 and "cart-recovery" in human and "segmentation-engine" not in human
    code, out, _ = await crm(
        "projections",
        "status",
        "--watch",
        "--times",
        "2",
        "--interval",
        "0.2",
        "--json",
        *suite.targets(),
    )
    assert code == 0 and len(lines(out)) == 2


async def test_status_of_a_service_that_cannot_be_reached_is_exit_2(suite: Suite) -> None:
    args = [*suite.targets(), "--admin", "orders=127.0.0.1:1"]
    code, out, errors = await crm("projections", "status", "--json", *args)
    assert code == 2, errors
    (report,) = lines(out)
    assert [e["service"] for e in report["errors"]] == ["orders"]
    assert {s["service"] for s in report["services"]} == {spec.name for spec in SERVICES} - {
        "orders"
    }
    code, _, errors = await crm("projections", "status", "--admin", "orders=nonsense")
    assert code == 2 and "SERVICE=HOST:PORT" in errors


async def test_rebuild_follows_to_the_end_and_refuses_what_it_cannot_do(suite: Suite) -> None:
    await suite.activity()
    await suite.settled()
    head = await suite.store.head_position()
    code, out, errors = await crm("projections", "rebuild", "contacts", "--json", *suite.targets())
    assert code == 0, errors
    progress = lines(out)
    assert (
        progress[-1]["state"] == "STATE_DONE"
        and progress[-1]["requested_by"] == tokens.NAMES["operator"]
    )
    assert await suite.store.head_position() == head
    code, _, errors = await crm("projections", "rebuild", "contacts", *suite.targets())
    assert code == 0 and "rebuilt contacts" in " ".join(errors.split())
    code, out, errors = await crm(
        "projections", "rebuild", "cart-recovery", "--json", *suite.targets()
    )
    assert code == 1 and lines(out)[-1]["error"]["reason"] == "REBUILD_NOT_SUPPORTED"
    code, _, errors = await crm("projections", "rebuild", "nope", *suite.targets())
    assert code == 1 and "no projection 'nope'" in errors


async def test_events_read_as_of_and_tail(suite: Suite) -> None:
    (contact,) = await suite.activity(n=1)
    stream = f"contact-{contact}"
    first = await suite.store.read_stream(stream)
    then = timestamp_text(first[-1].recorded_at)
    await suite.contacts.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(contact_id=contact, first_name="Ada"),
            update_mask=field_mask_pb2.FieldMask(paths=["first_name"]),
        )
    )
    code, out, errors = await crm("events", "read", stream, "--json", *suite.targets())
    assert code == 0, errors
    assert [e["version"] for e in lines(out)] == list(range(len(first) + 1))
    code, out, _ = await crm("events", "read", stream, "--as-of", then, "--json", *suite.targets())
    assert code == 0 and [e["version"] for e in lines(out)] == list(range(len(first)))
    assert lines(out)[0]["type"] == "crm.contacts.v1.ContactRegistered"
    code, _, errors = await crm("events", "read", "contact-nobody", *suite.targets())
    assert code == 1 and "STREAM_NOT_FOUND" in errors
    code, _, errors = await crm("events", "read", stream, "--as-of", "yesterday")
    assert code == 2 and "--as-of" in errors
    code, out, _ = await crm(
        "events",
        "tail",
        "--category",
        "order",
        "--since",
        "0",
        "--count",
        "1",
        "--json",
        "--service",
        "orders",
        *suite.targets(),
    )
    assert code == 0 and [e["type"] for e in lines(out)] == ["crm.orders.v1.OrderPlaced"]


async def test_contacts_show_and_segment_members_as_of(suite: Suite) -> None:
    await suite.segments.CreateSegment(
        spb.CreateSegmentRequest(key="vip", name="VIP", rule="orders_count >= 1")
    )
    c = await suite.contacts.RegisterContact(cpb.RegisterContactRequest(email="grace@shop.io"))
    contact = c.contact.contact_id
    await suite.settled()
    before = timestamp_text(datetime.now(UTC))
    await asyncio.sleep(0.01)
    await suite.contacts.UpdateContact(
        cpb.UpdateContactRequest(
            contact=cpb.Contact(contact_id=contact, first_name="Grace"),
            update_mask=field_mask_pb2.FieldMask(paths=["first_name"]),
        )
    )
    await suite.orders.PlaceOrder(
        opb.PlaceOrderRequest(
            customer=opb.CustomerRef(contact_id=contact),
            currency="EUR",
            items=[oepb.LineItem(sku="TEA-1", quantity=1, unit_price=500)],
        )
    )
    await suite.settled()
    code, _, errors = await crm(
        "contacts", "show", contact, "--target", suite.serve["contacts"].target
    )
    assert code == 2 and "REASON_REQUIRED" in errors  # an operator reads personal data: why?
    serve = ["--target", suite.serve["contacts"].target, "--reason", "ticket 42"]
    code, out, errors = await crm("contacts", "show", contact, "--json", *serve)
    assert code == 0 and lines(out)[0]["first_name"] == "Grace", errors
    code, out, _ = await crm("contacts", "show", contact, "--as-of", before, "--json", *serve)
    assert code == 0 and lines(out)[0]["first_name"] == "" and lines(out)[0]["email"]
    code, _, _ = await crm("contacts", "show", "7b1f1a52-0000-4000-8000-000000000000", *serve)
    assert code == 1
    code, _, _ = await crm("contacts", "show", "not-an-id", *serve)
    assert code == 2
    segments = ["--target", suite.serve["segmentation"].target]
    code, out, errors = await crm("segments", "members", "vip", "--json", *segments)
    assert code == 0 and lines(out)[0]["contact_ids"] == [contact], errors
    code, out, _ = await crm("segments", "members", "vip", "--as-of", before, "--json", *segments)
    assert code == 0 and lines(out)[0]["contact_ids"] == []
    code, out, _ = await crm("segments", "members", "vip", *segments)
    assert code == 0 and out.split() == [contact]
    code, _, errors = await crm("segments", "members", "nope", *segments)
    assert code == 1 and "no segment 'nope'" in errors
