"""The message RPCs over real gRPC, with contacts and orders served for real: SendMessage
decided on contacts' consent, by id or identity; GetMessage and ListMessages from the read
model, addresses only for roles that see personal data; SendTestMessage; every refusal a clear
error with one ErrorInfo, writing nothing."""

from __future__ import annotations

import grpc
from google.protobuf import struct_pb2

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications.tests.conftest import Env, expect_error

MARKETING, TRANSACTIONAL = epb.MESSAGE_KIND_MARKETING, epb.MESSAGE_KIND_TRANSACTIONAL
PERSONAL = "crm.audit.v1.PersonalDataRead"


async def _contact(
    env: Env, email: str = "ada@example.com", subscribe: bool = True, **more: str
) -> str:
    made = await env.contacts.RegisterContact(
        cpb.RegisterContactRequest(
            email=email,
            first_name=more.pop("first_name", "Ada"),
            time_zone="Europe/Paris",
            locale="fr",
            **more,  # type: ignore[arg-type]
        )
    )
    cid = made.contact.contact_id
    if subscribe:
        await env.consent.RecordConsent(
            kpb.RecordConsentRequest(
                contact_id=cid,
                channel=kpb.CHANNEL_EMAIL,
                state=kpb.CONSENT_STATE_SUBSCRIBED,
                legal_basis=kpb.LEGAL_BASIS_CONSENT,
                policy_version="v7",
            )
        )
    return str(cid)


async def _template(env: Env, key: str = "welcome", text: str = "") -> str:
    variant = epb.TemplateVariant(
        subject="Hi {{ contact.first_name }}",
        text=text or "You have {{ metrics.order_count }} orders; {{ data.offer }}",
    )
    made = await env.stub.CreateTemplate(
        pb.CreateTemplateRequest(
            key=key, name="Welcome", channel=epb.CHANNEL_EMAIL, variants=[variant]
        )
    )
    return str(made.template.template_id)


def _data(**values: str) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


async def test_send_get_and_list_a_message(env: Env) -> None:
    cid = await _contact(env)
    tid = await _template(env)
    sent = await env.stub.SendMessage(
        pb.SendMessageRequest(
            contact_id=cid, template_id=tid, kind=MARKETING, data=_data(offer="tea"), request_id="a"
        )
    )
    m = sent.message
    assert (m.status, m.channel, m.address) == (pb.MESSAGE_STATUS_QUEUED, epb.CHANNEL_EMAIL, "")
    [decided] = m.decisions
    assert decided.outcome == epb.OUTCOME_SEND
    assert (decided.consent.state, decided.consent.policy_version) == (
        "CONSENT_STATE_SUBSCRIBED",
        "v7",
    )
    assert decided.consent.update_time.seconds > 0
    assert (decided.time_zone, decided.cap_limit) == ("Europe/Paris", 3)
    again = await env.stub.SendMessage(
        pb.SendMessageRequest(
            contact_id=cid, template_id=tid, kind=MARKETING, data=_data(offer="tea"), request_id="a"
        )
    )
    assert again.message.message_id == m.message_id  # AIP-155
    rows = await env.store.pool.fetch("SELECT text FROM notifications_pipeline.outbox")
    assert [r["text"] for r in rows] == ["You have 0 orders; tea"]  # orders' metrics, for real
    await env.settle()
    got = (await env.stub.GetMessage(pb.GetMessageRequest(message_id=m.message_id))).message
    assert (got.status, got.address, got.personal_data_redacted) == (
        m.status,
        "ada@example.com",
        False,
    )
    assert got.decisions[0] == decided
    listed = await env.stub.ListMessages(pb.ListMessagesRequest(contact_id=cid))
    assert [x.message_id for x in listed.messages] == [m.message_id]


async def test_auditors_read_messages_without_addresses(env: Env) -> None:
    cid = await _contact(env)
    tid = await _template(env)
    sent = await env.stub.SendMessage(
        pb.SendMessageRequest(
            contact_id=cid, template_id=tid, kind=TRANSACTIONAL, data=_data(offer="x")
        )
    )
    await env.settle()
    mid = sent.message.message_id
    async with env.served.channel_as("auditor") as channel:
        stub = pb_grpc.NotificationsServiceStub(channel)
        got = (await stub.GetMessage(pb.GetMessageRequest(message_id=mid))).message
        assert (got.address, got.personal_data_redacted) == ("", True)
        assert got.decisions[0].outcome == epb.OUTCOME_SEND
        await expect_error(
            stub.SendMessage(
                pb.SendMessageRequest(contact_id=cid, template_id=tid, kind=MARKETING)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_NOT_ALLOWED",
        )
    async with env.served.channel_as("operator") as channel:
        stub = pb_grpc.NotificationsServiceStub(channel)
        await expect_error(
            stub.GetMessage(pb.GetMessageRequest(message_id=mid)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "REASON_REQUIRED",
        )
    async with env.served.channel_as("operator", reason="support ticket 7") as channel:
        stub = pb_grpc.NotificationsServiceStub(channel)
        got = (await stub.GetMessage(pb.GetMessageRequest(message_id=mid))).message
        assert got.address == "ada@example.com"
    reads = await env.store.pool.fetch(
        "SELECT data FROM eventstore.events WHERE type = $1", PERSONAL
    )
    assert any("support ticket 7" in str(r["data"]) for r in reads)


async def test_consent_withdrawn_at_contacts_skips_marketing(env: Env) -> None:
    cid = await _contact(env, subscribe=False)
    tid = await _template(env)
    await env.contacts_served.settle()  # FindContact reads contacts' read model
    m = (
        await env.stub.SendMessage(
            pb.SendMessageRequest(email="ada@example.com", template_id=tid, kind=MARKETING)
        )
    ).message
    assert m.contact_id == cid
    assert (m.status, m.decisions[0].reason) == (pb.MESSAGE_STATUS_SKIPPED, "NO_CONSENT")
    assert m.decisions[0].consent.state == "CONSENT_STATE_NEVER_SUBSCRIBED"
    await env.settle()
    listed = await env.stub.ListMessages(
        pb.ListMessagesRequest(contact_id=cid, status=pb.MESSAGE_STATUS_QUEUED)
    )
    assert list(listed.messages) == []


async def test_a_render_failure_is_a_skip_in_the_answer(env: Env) -> None:
    cid = await _contact(env)
    tid = await _template(env, text="{{ data.missing }}")
    m = (
        await env.stub.SendMessage(
            pb.SendMessageRequest(contact_id=cid, template_id=tid, kind=TRANSACTIONAL)
        )
    ).message
    assert (m.decisions[0].reason, m.decisions[0].detail) == (
        "RENDER_FAILED",
        "text, line 1: undefined variable 'data.missing'",
    )


async def test_list_messages_pages_newest_first(env: Env) -> None:
    cid = await _contact(env)
    tid = await _template(env, text="plain")
    ids = []
    for _ in range(3):
        m = await env.stub.SendMessage(
            pb.SendMessageRequest(contact_id=cid, template_id=tid, kind=TRANSACTIONAL)
        )
        ids.append(m.message.message_id)
    await env.settle()
    first = await env.stub.ListMessages(pb.ListMessagesRequest(contact_id=cid, page_size=2))
    second = await env.stub.ListMessages(
        pb.ListMessagesRequest(contact_id=cid, page_size=2, page_token=first.next_page_token)
    )
    assert [m.message_id for m in [*first.messages, *second.messages]] == ids[::-1]
    assert second.next_page_token == ""
    kinds = await env.stub.ListMessages(pb.ListMessagesRequest(contact_id=cid, kind=MARKETING))
    assert list(kinds.messages) == []


async def test_bad_requests_are_refused_and_write_nothing(env: Env) -> None:
    cid = await _contact(env)
    tid = await _template(env)
    before = await env.written()
    cases = [
        (pb.SendMessageRequest(template_id=tid, kind=MARKETING), "CONTACT_REQUIRED"),
        (
            pb.SendMessageRequest(
                contact_id=cid, email="a@b.example", template_id=tid, kind=TRANSACTIONAL
            ),
            "CONTACT_AMBIGUOUS",
        ),
        (
            pb.SendMessageRequest(contact_id="x", template_id=tid, kind=TRANSACTIONAL),
            "INVALID_CONTACT_ID",
        ),
        (pb.SendMessageRequest(contact_id=cid, kind=MARKETING), "TEMPLATE_REQUIRED"),
        (pb.SendMessageRequest(contact_id=cid, template_id=tid), "INVALID_KIND"),
        (
            pb.SendMessageRequest(
                contact_id=cid, template_id=tid, kind=TRANSACTIONAL, webhook_url="ftp://x"
            ),
            "INVALID_WEBHOOK_URL",
        ),
        (
            pb.SendMessageRequest(
                contact_id=cid,
                template_id=tid,
                kind=TRANSACTIONAL,
                webhook_url="https://h.example/x",
            ),
            "WEBHOOK_URL_UNUSED",
        ),
        (
            pb.SendMessageRequest(
                contact_id=cid, template_id=tid, kind=TRANSACTIONAL, webhook_url="http://[::1"
            ),
            "INVALID_WEBHOOK_URL",
        ),
    ]
    for request, reason in cases:
        await expect_error(env.stub.SendMessage(request), grpc.StatusCode.INVALID_ARGUMENT, reason)
    await expect_error(
        env.stub.SendMessage(
            pb.SendMessageRequest(email="nobody@example.com", template_id=tid, kind=TRANSACTIONAL)
        ),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    )
    await expect_error(
        env.stub.SendMessage(
            pb.SendMessageRequest(contact_id=cid, template_key="nope", kind=TRANSACTIONAL)
        ),
        grpc.StatusCode.NOT_FOUND,
        "TEMPLATE_NOT_FOUND",
    )
    await env.stub.ArchiveTemplate(pb.ArchiveTemplateRequest(template_id=tid))
    await expect_error(
        env.stub.SendMessage(
            pb.SendMessageRequest(contact_id=cid, template_id=tid, kind=TRANSACTIONAL)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TEMPLATE_ARCHIVED",
    )
    await expect_error(
        env.stub.GetMessage(pb.GetMessageRequest(message_id=cid)),
        grpc.StatusCode.NOT_FOUND,
        "MESSAGE_NOT_FOUND",
    )
    assert await env.written() == before + 1  # only the archive's event


async def test_send_a_test_message(env: Env) -> None:
    tid = await _template(env, "t", text="Hello {{ contact.first_name }}")
    sample = struct_pb2.Struct()
    sample.update({"contact": {"first_name": "Sam"}})
    m = (
        await env.stub.SendTestMessage(
            pb.SendTestMessageRequest(template_id=tid, address="qa@shop.example", variables=sample)
        )
    ).message
    assert (m.test, m.status, m.address) == (True, pb.MESSAGE_STATUS_QUEUED, "qa@shop.example")
    assert m.decisions[0].trigger.source == "test"
    [row] = await env.store.pool.fetch("SELECT text, test FROM notifications_pipeline.outbox")
    assert (row["text"], row["test"]) == ("Hello Sam", True)
    await expect_error(
        env.stub.SendTestMessage(pb.SendTestMessageRequest(template_id=tid, address="+3360000")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ADDRESS",
    )
    await expect_error(
        env.stub.SendTestMessage(pb.SendTestMessageRequest(template_id=tid, address="a@b.example")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RENDER_ERROR",
    )


async def test_erasing_a_contact_leaves_nothing_personal_in_notifications(env: Env) -> None:
    cid = await _contact(env, email="erin@example.com", phone="+33611223344", first_name="Erin")
    tid = await _template(env, text="Hello {{ contact.first_name }}: {{ data.code }}")
    sent = await env.stub.SendMessage(
        pb.SendMessageRequest(
            contact_id=cid, template_id=tid, kind=TRANSACTIONAL, data=_data(code="SECRET-42")
        )
    )
    sms = await env.stub.CreateTemplate(
        pb.CreateTemplateRequest(
            key="night",
            name="Night",
            channel=epb.CHANNEL_SMS,
            variants=[epb.TemplateVariant(body="{{ data.code }}")],
        )
    )
    await env.stub.SendMessage(  # deferred or queued, depending on the hour in Paris
        pb.SendMessageRequest(
            contact_id=cid,
            template_id=sms.template.template_id,
            kind=TRANSACTIONAL,
            data=_data(code="SECRET-43"),
        )
    )
    personal = ("erin@example.com", "+33611223344", "Erin", "SECRET-42", "SECRET-43")
    before = await _notifications_data(env)
    held = ("erin@example.com", "Erin", "SECRET-42", "SECRET-43")  # the phone: once sendable
    assert all(any(p in dump for dump in before) for p in held)
    await env.contacts.EraseContact(cpb.EraseContactRequest(contact_id=cid, reason="art. 17"))
    await env.settle()
    for dump in await _notifications_data(env):
        assert not any(p in dump for p in personal), dump[:300]
    got = await env.stub.GetMessage(pb.GetMessageRequest(message_id=sent.message.message_id))
    assert (got.message.address, got.message.status) == ("", pb.MESSAGE_STATUS_QUEUED)
    # a message asked for afterwards is skipped: contacts answers erased
    again = await env.stub.SendMessage(
        pb.SendMessageRequest(contact_id=cid, template_id=tid, kind=TRANSACTIONAL)
    )
    assert again.message.decisions[0].reason == "CONTACT_ERASED"
    await env.settle()
    for dump in await _notifications_data(env):
        assert not any(p in dump for p in personal), dump[:300]


async def _notifications_data(env: Env) -> list[str]:
    """Every row of every notifications table, and every notifications event, as text."""
    tables = await env.store.pool.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_schema LIKE 'notifications%'"
    )
    out = []
    for t in tables:
        rows = await env.store.pool.fetch(
            f'SELECT to_jsonb(x)::text AS j FROM "{t["table_schema"]}"."{t["table_name"]}" x'
        )
        out += [r["j"] for r in rows]
    events = await env.store.pool.fetch(
        "SELECT data::text AS j FROM eventstore.events WHERE stream_id LIKE 'message-%'"
    )
    return out + [r["j"] for r in events]
