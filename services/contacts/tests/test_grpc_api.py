"""The contacts gRPC API over a real socket, against a real PostgreSQL, with the projection."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import events_pb2
from services.contacts.tests.conftest import SERVICE, Env
from services.contacts.tests.helpers import expect_error, register
from shared.grpckit.errors import error_info
from shared.grpckit.server import LIVENESS, GrpcServer
from shared.metrics import GRPC_HANDLED
from shared.testing import rpc
from shared.testing.events import read_everything


async def test_register_get_update_find_list(env: Env) -> None:
    c = await register(
        env, email="Ada@Example.com", phone="+1 415 555 2671", first_name="Ada", tags=["vip"]
    )
    assert (c.email, c.phone, c.etag) == ("ada@example.com", "+14155552671", "0")
    got = (await env.stub.GetContact(pb.GetContactRequest(contact_id=c.contact_id))).contact
    assert got == c

    upd = await env.stub.UpdateContact(
        pb.UpdateContactRequest(
            contact=pb.Contact(contact_id=c.contact_id, last_name="Lovelace", email="ada@math.org"),
            update_mask=FieldMask(paths=["last_name", "email"]),
            etag="0",
        )
    )
    assert (upd.contact.last_name, upd.contact.email, upd.contact.etag) == (
        "Lovelace",
        "ada@math.org",
        "1",
    )
    assert upd.contact.first_name == "Ada"

    await env.settle()
    found = await env.stub.FindContact(pb.FindContactRequest(email="ADA@math.org"))
    assert found.contact.contact_id == c.contact_id and found.contact.etag == "1"
    by_phone = await env.stub.FindContact(pb.FindContactRequest(phone="+14155552671"))
    assert by_phone.contact.contact_id == c.contact_id
    # the released email can be taken by someone else now
    other = await register(env, email="ada@example.com")
    assert other.contact_id != c.contact_id


async def test_list_pages_and_filters(env: Env) -> None:
    ids = set()
    for i in range(7):
        c = await register(env, external_id=f"shop-{i}", tags=["even" if i % 2 == 0 else "odd"])
        ids.add(c.contact_id)
    await env.settle()
    seen: list[str] = []
    token = ""
    while True:
        page = await env.stub.ListContacts(pb.ListContactsRequest(page_size=3, page_token=token))
        assert len(page.contacts) <= 3
        seen.extend(c.contact_id for c in page.contacts)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 7 and set(seen) == ids and seen == sorted(seen)
    evens = await env.stub.ListContacts(pb.ListContactsRequest(tag="even"))
    assert len(evens.contacts) == 4
    one = await env.stub.ListContacts(pb.ListContactsRequest(external_id="shop-3"))
    assert [c.external_id for c in one.contacts] == ["shop-3"]


async def test_duplicate_identity_names_the_holder_and_writes_nothing(env: Env) -> None:
    first = await register(env, email="a@b.co")
    before = await env.event_count()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await register(env, email="A@B.CO", phone="+14155552671")
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    detail = error_info(rpc_status.from_call(info.value))
    assert detail is not None and detail.metadata["contact_id"] == first.contact_id
    assert await env.event_count() == before


async def test_racing_registrations_of_one_email_have_one_winner(env: Env) -> None:
    results = await asyncio.gather(
        *(register(env, email="race@b.co", first_name=str(i)) for i in range(8)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, pb.Contact)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 7
    assert {e.code() for e in losers} <= {grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.ABORTED}


async def test_request_id_makes_retries_exactly_once(env: Env) -> None:
    a = await register(env, email="once@b.co", request_id="req-1")
    before = await env.event_count()
    b = await register(env, email="once@b.co", request_id="req-1")
    assert a == b and await env.event_count() == before
    req = pb.UpdateContactRequest(
        contact=pb.Contact(contact_id=a.contact_id, first_name="X"),
        update_mask=FieldMask(paths=["first_name"]),
        request_id="req-2",
    )
    u1 = await env.stub.UpdateContact(req)
    u2 = await env.stub.UpdateContact(req)
    assert u1.contact.etag == u2.contact.etag == "1"
    assert await env.event_count() == before + 1


BAD_INPUT = [
    (
        "RegisterContact",
        pb.RegisterContactRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "IDENTITY_REQUIRED",
    ),
    (
        "RegisterContact",
        pb.RegisterContactRequest(email="nope"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_EMAIL",
    ),
    (
        "RegisterContact",
        pb.RegisterContactRequest(phone="555-1234"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PHONE",
    ),
    (
        "RegisterContact",
        pb.RegisterContactRequest(email="a@b.co", last_name="x" * 5000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "RegisterContact",
        pb.RegisterContactRequest(external_id="bad\x01id"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_EXTERNAL_ID",
    ),
    (
        "RegisterContact",
        pb.RegisterContactRequest(external_id="x" * 300),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "RegisterContact",
        pb.RegisterContactRequest(email="a@b.co", tags=["has space"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TAG",
    ),
    (
        "RegisterContact",
        pb.RegisterContactRequest(email="a@b.co", request_id="r" * 200),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST_ID",
    ),
    ("GetContact", pb.GetContactRequest(), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONTACT_ID"),
    (
        "GetContact",
        pb.GetContactRequest(contact_id="123"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "GetContact",
        pb.GetContactRequest(contact_id="00000000-0000-0000-0000-000000000001"),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "UpdateContact",
        pb.UpdateContactRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "UpdateContact",
        pb.UpdateContactRequest(
            contact=pb.Contact(contact_id="00000000-0000-0000-0000-000000000001"),
            update_mask=FieldMask(paths=["first_name"]),
        ),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "ListContacts",
        pb.ListContactsRequest(page_size=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    ),
    (
        "ListContacts",
        pb.ListContactsRequest(page_size=5000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    ),
    (
        "ListContacts",
        pb.ListContactsRequest(page_token="garbage"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    ),
    (
        "ListContacts",
        pb.ListContactsRequest(email="bad"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_EMAIL",
    ),
    ("FindContact", pb.FindContactRequest(), grpc.StatusCode.INVALID_ARGUMENT, "IDENTITY_REQUIRED"),
    (
        "FindContact",
        pb.FindContactRequest(phone="abc"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PHONE",
    ),
    (
        "FindContact",
        pb.FindContactRequest(email="nobody@b.co"),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
]


@pytest.mark.parametrize(
    ("method", "request_", "code", "reason"),
    BAD_INPUT,
    ids=[f"{m}-{r}" for m, _, _, r in BAD_INPUT],
)
async def test_bad_input_is_a_clear_error_and_writes_nothing(
    env: Env, method: str, request_: object, code: grpc.StatusCode, reason: str
) -> None:
    before = await env.event_count()
    await expect_error(getattr(env.stub, method)(request_), code, reason)
    assert await env.event_count() == before


async def test_update_errors_on_an_existing_contact_write_nothing(env: Env) -> None:
    c = await register(env, email="u@b.co")
    taken = await register(env, email="taken@b.co")
    before = await env.event_count()

    def update(paths: list[str], etag: str = "", **fields: object) -> object:
        return env.stub.UpdateContact(
            pb.UpdateContactRequest(
                contact=pb.Contact(contact_id=c.contact_id, **fields),  # type: ignore[arg-type]
                update_mask=FieldMask(paths=paths),
                etag=etag,
            )
        )

    await expect_error(
        update(["first_name"], etag="7", first_name="x"), grpc.StatusCode.ABORTED, "ETAG_MISMATCH"
    )
    await expect_error(update([]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD_MASK")
    await expect_error(
        update(["contact_id"]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD_MASK"
    )
    await expect_error(
        update(["email"], email="bad"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_EMAIL"
    )
    await expect_error(update(["email"]), grpc.StatusCode.INVALID_ARGUMENT, "IDENTITY_REQUIRED")
    await expect_error(
        update(["email"], email="TAKEN@b.co"), grpc.StatusCode.ALREADY_EXISTS, "IDENTITY_TAKEN"
    )
    violations = await expect_error(
        update(["first_name", "tags"], first_name="y" * 300, tags=["Not Ok"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    )
    assert violations == ["first_name", "tags"]
    assert await env.event_count() == before
    assert taken.email == "taken@b.co"


async def test_every_appended_event_decodes_as_its_published_message(env: Env) -> None:
    c = await register(env, email="p@b.co", external_id="x-1", tags=["a"])
    await env.stub.UpdateContact(
        pb.UpdateContactRequest(
            contact=pb.Contact(contact_id=c.contact_id, email="q@b.co", tags=[]),
            update_mask=FieldMask(paths=["email", "tags"]),
        )
    )
    page_events = await read_everything(env.store)
    assert len(page_events) >= 5
    for e in page_events:
        rpc.published_message(e, events_pb2)
        assert e.metadata["schema"] == 1 and "correlation_id" in e.metadata


async def test_health_reflection_metrics(env: Env) -> None:
    health = health_pb2_grpc.HealthStub(env.channel)
    for name in ("", SERVICE, LIVENESS):
        r = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    before = GRPC_HANDLED.labels("unary", SERVICE, "GetContact", "INVALID_ARGUMENT")._value.get()
    with pytest.raises(grpc.aio.AioRpcError):
        await env.stub.GetContact(pb.GetContactRequest(contact_id="x"))
    # the server counts in its `finally`, which may run just after the client has the status
    for _ in range(100):
        after = GRPC_HANDLED.labels("unary", SERVICE, "GetContact", "INVALID_ARGUMENT")._value.get()
        if after > before:
            break
        await asyncio.sleep(0.01)
    assert after == before + 1


async def test_server_is_not_serving_until_ready() -> None:
    server = GrpcServer(host="127.0.0.1", port=0, grace=0.1)
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        health = health_pb2_grpc.HealthStub(ch)
        r = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
        r = await health.Check(health_pb2.HealthCheckRequest(service=LIVENESS))
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        await server.ready()
        r = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    await server.stop()


async def test_logs_are_json_with_request_and_correlation_ids(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import structlog

    from shared.logs import configure

    configure("INFO", "json", cache=False)
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await env.stub.RegisterContact(
                pb.RegisterContactRequest(email="bad", request_id="req-log-1"),
                metadata=[("x-correlation-id", "corr-42")],
            )
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    finally:
        structlog.reset_defaults()
    [line] = [x for x in lines if x.get("event") == "rpc.error"]
    assert line["request_id"] == "req-log-1" and line["correlation_id"] == "corr-42"
    assert line["reason"] == "INVALID_EMAIL" and line["rpc"] == "RegisterContact"
    assert "bad" not in json.dumps(line)  # the rejected value is not logged
