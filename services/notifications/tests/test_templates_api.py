"""The templates API over a real socket on a real PostgreSQL: create, versions and etags, keys,
archive, lists from the read model, previews with sample data and their errors."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from services.notifications.tests.conftest import Env, create_email, email, expect_error

OK = grpc.StatusCode


def data(**values: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


async def test_create_get_by_id_and_key(env: Env) -> None:
    t = await create_email(env, "welcome", request_id="create-1")
    assert (t.version, t.latest_version, t.etag) == (1, 1, "0")
    assert [v.locale for v in t.variants] == ["", "fr"]
    again = await create_email(env, "welcome", request_id="create-1")  # a retry: same answer
    assert again.template_id == t.template_id
    by_key = (await env.stub.GetTemplate(pb.GetTemplateRequest(key="welcome"))).template
    assert by_key == t
    await expect_error(
        env.stub.GetTemplate(pb.GetTemplateRequest(key="nope")), OK.NOT_FOUND, "TEMPLATE_NOT_FOUND"
    )


async def test_a_taken_key_is_already_exists_and_writes_nothing(env: Env) -> None:
    first = await create_email(env, "taken")
    before = await env.template_events()
    await expect_error(create_email(env, "taken"), OK.ALREADY_EXISTS, "TEMPLATE_KEY_TAKEN")
    assert await env.template_events() == before
    got = await env.stub.GetTemplate(pb.GetTemplateRequest(key="taken"))
    assert got.template.template_id == first.template_id


async def test_versions_with_etags(env: Env) -> None:
    t = await create_email(env)
    new = [email(subject="Welcome back {{ contact.first_name }}")]
    r = await env.stub.UpdateTemplate(
        pb.UpdateTemplateRequest(template_id=t.template_id, name="W2", variants=new, etag=t.etag)
    )
    assert (r.template.version, r.template.name, r.template.etag) == (2, "W2", "1")
    # the same content again: no new version
    same = await env.stub.UpdateTemplate(
        pb.UpdateTemplateRequest(template_id=t.template_id, name="W2", variants=new)
    )
    assert same.template.version == 2
    await expect_error(
        env.stub.UpdateTemplate(
            pb.UpdateTemplateRequest(
                template_id=t.template_id, name="W3", variants=new, etag=t.etag
            )
        ),
        OK.ABORTED,
        "ETAG_MISMATCH",
    )
    v1 = await env.stub.GetTemplate(pb.GetTemplateRequest(template_id=t.template_id, version=1))
    assert (v1.template.version, v1.template.latest_version, v1.template.name) == (1, 2, "Welcome")
    assert len(v1.template.variants) == 2
    await expect_error(
        env.stub.GetTemplate(pb.GetTemplateRequest(template_id=t.template_id, version=3)),
        OK.NOT_FOUND,
        "VERSION_NOT_FOUND",
    )
    await env.settle()
    versions = await env.stub.ListTemplateVersions(
        pb.ListTemplateVersionsRequest(template_id=t.template_id, page_size=1)
    )
    assert [v.version for v in versions.versions] == [2]
    rest = await env.stub.ListTemplateVersions(
        pb.ListTemplateVersionsRequest(
            template_id=t.template_id, page_size=1, page_token=versions.next_page_token
        )
    )
    assert [v.version for v in rest.versions] == [1] and rest.next_page_token == ""
    assert rest.versions[0].name == "Welcome"


async def test_syntax_error_on_save_names_field_and_line(env: Env) -> None:
    bad = epb.TemplateVariant(locale="fr", subject="ok", text="a\nb\n{% if %}")
    fields = await expect_error(
        create_email(env, variants=[email(), bad]), OK.INVALID_ARGUMENT, "TEMPLATE_SYNTAX"
    )
    assert fields == ["variants[1].text"]
    assert await env.template_events() == 0


async def test_render_with_sample_data_and_locale_fallback(env: Env) -> None:
    t = await create_email(env, "render-me")
    sample = data(contact={"first_name": "<Zoé>"}, count=3)
    r = await env.stub.RenderTemplate(
        pb.RenderTemplateRequest(key="render-me", locale="fr-CA", variables=sample)
    )
    assert (r.template_id, r.version, r.locale) == (t.template_id, 1, "fr")
    assert r.email.subject == "Bonjour <Zoé>"
    assert r.email.text == "Hello <Zoé>, 3 items"  # not escaped, and 3 not 3.0
    assert r.email.html == "<p>Hello &lt;Zoé&gt;</p>"  # escaped
    default = await env.stub.RenderTemplate(
        pb.RenderTemplateRequest(template_id=t.template_id, locale="de", variables=sample)
    )
    assert default.locale == "" and default.email.subject == "Hi <Zoé>"


async def test_render_sms_segments(env: Env) -> None:
    await env.stub.CreateTemplate(
        pb.CreateTemplateRequest(
            key="sms",
            name="SMS",
            channel=epb.CHANNEL_SMS,
            variants=[epb.TemplateVariant(body="{{ m }}")],
        )
    )
    gsm = await env.stub.RenderTemplate(
        pb.RenderTemplateRequest(key="sms", variables=data(m="a" * 161))
    )
    assert (gsm.sms.encoding, gsm.sms.units, gsm.sms.segments) == (pb.SMS_ENCODING_GSM7, 161, 2)
    ucs = await env.stub.RenderTemplate(
        pb.RenderTemplateRequest(key="sms", variables=data(m="Привет"))
    )
    assert (ucs.sms.encoding, ucs.sms.segments) == (pb.SMS_ENCODING_UCS2, 1)


async def test_render_error_names_the_variable(env: Env) -> None:
    t = await create_email(env)
    await expect_error(
        env.stub.RenderTemplate(
            pb.RenderTemplateRequest(template_id=t.template_id, variables=data(contact={}))
        ),
        OK.FAILED_PRECONDITION,
        "RENDER_ERROR",
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.stub.RenderTemplate(
            pb.RenderTemplateRequest(template_id=t.template_id, variables=data(contact={}))
        )
    assert "undefined variable 'contact.first_name'" in (info.value.details() or "")
    await expect_error(
        env.stub.RenderTemplate(pb.RenderTemplateRequest(template_id=t.template_id, locale="x")),
        OK.INVALID_ARGUMENT,
        "INVALID_LOCALE",
    )


async def test_archive_then_list(env: Env) -> None:
    a = await create_email(env, "a-one")
    await create_email(env, "b-two")
    await env.stub.ArchiveTemplate(pb.ArchiveTemplateRequest(template_id=a.template_id))
    again = await env.stub.ArchiveTemplate(pb.ArchiveTemplateRequest(template_id=a.template_id))
    assert again.template.archived
    await expect_error(
        env.stub.RenderTemplate(pb.RenderTemplateRequest(key="a-one")),
        OK.FAILED_PRECONDITION,
        "TEMPLATE_ARCHIVED",
    )
    await env.settle()
    listed = await env.stub.ListTemplates(pb.ListTemplatesRequest())
    assert [t.key for t in listed.templates] == ["b-two"]
    first = await env.stub.ListTemplates(
        pb.ListTemplatesRequest(include_archived=True, page_size=1)
    )
    assert [t.key for t in first.templates] == ["a-one"] and first.templates[0].archived
    second = await env.stub.ListTemplates(
        pb.ListTemplatesRequest(
            include_archived=True, page_size=1, page_token=first.next_page_token
        )
    )
    assert [t.key for t in second.templates] == ["b-two"]
    assert second.templates[0].variants == (await create_email_get(env, "b-two")).variants
    sms_only = await env.stub.ListTemplates(pb.ListTemplatesRequest(channel=epb.CHANNEL_SMS))
    assert list(sms_only.templates) == []
    await expect_error(
        env.stub.ListTemplates(
            pb.ListTemplatesRequest(page_size=1, page_token=first.next_page_token)
        ),
        OK.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def create_email_get(env: Env, key: str) -> pb.Template:
    return (await env.stub.GetTemplate(pb.GetTemplateRequest(key=key))).template
