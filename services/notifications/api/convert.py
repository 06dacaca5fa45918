"""NotificationsService messages to domain values and back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import struct_pb2

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from services.notifications.domain import sms
from services.notifications.domain.message import Rendered
from services.notifications.domain.template import Template, Version
from services.notifications.domain.variant import EMAIL, SMS, Variant
from shared.grpckit import calls

ENCODINGS = {sms.GSM7: pb.SMS_ENCODING_GSM7, sms.UCS2: pb.SMS_ENCODING_UCS2}


def channel_name(number: int) -> str:
    """A Channel number as the domain names it ("" for UNSPECIFIED)."""
    return (
        "" if number == epb.CHANNEL_UNSPECIFIED else epb.Channel.Name(epb.Channel.ValueType(number))
    )


def variants_in(items: Iterable[epb.TemplateVariant]) -> list[Variant]:
    return [Variant(v.locale, v.subject, v.text, v.html, v.body) for v in items]


def variants_out(variants: Iterable[Variant]) -> list[epb.TemplateVariant]:
    return [
        epb.TemplateVariant(
            locale=v.locale, subject=v.subject, text=v.text, html=v.html, body=v.body
        )
        for v in variants
    ]


def template_pb(t: Template, shown: Version | None = None) -> pb.Template:
    shown = shown or t.latest
    out = pb.Template(
        template_id=t.template_id,
        key=t.key,
        name=shown.name,
        channel=epb.Channel.Value(t.channel),
        variants=variants_out(shown.variants),
        version=shown.version,
        latest_version=t.latest.version,
        archived=t.archived,
        etag=str(t.version),
    )
    if t.create_time is not None:
        out.create_time.CopyFrom(calls.timestamp(t.create_time))
    if t.update_time is not None:
        out.update_time.CopyFrom(calls.timestamp(t.update_time))
    return out


def version_pb(v: Version) -> pb.TemplateVersion:
    out = pb.TemplateVersion(version=v.version, name=v.name, variants=variants_out(v.variants))
    if v.create_time is not None:
        out.create_time.CopyFrom(calls.timestamp(v.create_time))
    return out


def value(v: struct_pb2.Value) -> Any:
    """A Struct value as plain data; whole numbers as ints (Struct has only doubles, and
    "3 items" must not render as "3.0 items")."""
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return {k: value(x) for k, x in v.struct_value.fields.items()}
    if kind == "list_value":
        return [value(x) for x in v.list_value.values]
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None


def variables(s: struct_pb2.Struct) -> dict[str, Any]:
    return {k: value(x) for k, x in s.fields.items()}


def rendered_pb(template_id: str, version: int, r: Rendered) -> pb.RenderTemplateResponse:
    out = pb.RenderTemplateResponse(
        template_id=template_id,
        version=version,
        locale=r.locale,
        channel=epb.Channel.Value(r.channel),
    )
    if r.channel == EMAIL:
        out.email.CopyFrom(pb.RenderedEmail(subject=r.subject, text=r.text, html=r.html))
    elif r.channel == SMS:
        assert r.sms is not None
        out.sms.CopyFrom(
            pb.RenderedSms(
                body=r.body,
                encoding=ENCODINGS[r.sms.encoding],
                units=r.sms.units,
                segments=r.sms.segments,
            )
        )
    else:
        out.webhook.CopyFrom(pb.RenderedWebhook(body=r.body))
    return out
