"""The message RPCs of NotificationsService (SendMessage, SendMessages, SendTestMessage,
GetMessage, ListMessages): request checks, the call, the answer; addresses only to roles that see
personal data (each such read recorded by the platform's audit)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import grpc
from google.protobuf import json_format

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from services.notifications.adapters.messages_readmodel import MessageQueries
from services.notifications.api import convert
from services.notifications.application.batch_sending import BatchSender
from services.notifications.application.send_queue import SendQueue
from services.notifications.application.sending import MessageCommands, SendRequest
from services.notifications.domain import decision as d
from services.notifications.domain import locale as loc
from services.notifications.domain import tracking
from services.notifications.domain.trail import Trail
from services.notifications.domain.variant import EMAIL, SMS
from shared.domain.errors import NotFound
from shared.grpckit import calls
from shared.grpckit.audit import PersonalDataAudit
from shared.grpckit.interceptor import to_service_error

DOMAIN = "notifications.crm"
MAX_BATCH = 500  # SendMessages' requests
EMAIL_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
IDENTITIES = ("email", "phone", "external_id")
STEPS = {
    d.DISPATCHED: "dispatched",
    d.SENT: "sent",
    d.FAILED: "failed",
    tracking.OPENED: "opened",
    tracking.CLICKED: "clicked",
    tracking.UNSUBSCRIBED: "unsubscribed",
    d.DELIVERED: "delivered",
    d.BOUNCED: "bounced",
    d.COMPLAINED: "complained",
}
STEP_TYPES = {
    "dispatched": epb.MessageDispatched,
    "sent": epb.MessageSent,
    "failed": epb.MessageFailed,
    "opened": epb.MessageOpened,
    "clicked": epb.MessageClicked,
    "unsubscribed": epb.MessageUnsubscribed,
    "delivered": epb.MessageDelivered,
    "bounced": epb.MessageBounced,
    "complained": epb.MessageComplained,
}


def _invalid(field: str, reason: str, message: str) -> Exception:
    return calls.invalid(DOMAIN, field, reason, message)


def url_arg(value: str, field: str) -> str:
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # a malformed IPv6 host
        host = None
    if host is None or parts.scheme not in ("https", "http") or any(c.isspace() for c in value):
        raise _invalid(field, "INVALID_WEBHOOK_URL", "an http(s) URL with a host")
    return value


def locale_arg(value: str) -> str:
    try:
        return loc.canonical(value)
    except loc.LocaleError as err:
        raise _invalid("locale", "INVALID_LOCALE", str(err)) from None


def kind_arg(value: int) -> str:
    if value == epb.MESSAGE_KIND_UNSPECIFIED:
        raise _invalid("kind", "INVALID_KIND", "MESSAGE_KIND_MARKETING or _TRANSACTIONAL")
    return epb.MessageKind.Name(value)  # type: ignore[arg-type]


def template_ref(template_id: str, key: str) -> tuple[str, str]:
    if template_id and key:
        raise _invalid("template_key", "TEMPLATE_AMBIGUOUS", "template_id or template_key")
    if not template_id and not key:
        raise _invalid("template_id", "TEMPLATE_REQUIRED", "template_id or template_key")
    if template_id:
        template_id = calls.required_uuid(DOMAIN, template_id, "template_id", "INVALID_TEMPLATE_ID")
    return template_id, key


def send_request(r: pb.SendMessageRequest) -> SendRequest:
    given = [f for f in ("contact_id", *IDENTITIES) if getattr(r, f)]
    if not given:
        raise _invalid("contact_id", "CONTACT_REQUIRED", "contact_id, email, phone or external_id")
    if len(given) > 1:
        raise _invalid(given[1], "CONTACT_AMBIGUOUS", "one of contact_id, email, phone, ...")
    contact_id = ""
    identity = None
    if r.contact_id:
        contact_id = calls.required_uuid(DOMAIN, r.contact_id, "contact_id", "INVALID_CONTACT_ID")
    else:
        identity = (given[0], getattr(r, given[0]))
    template_id, key = template_ref(r.template_id, r.template_key)
    return SendRequest(
        kind=kind_arg(r.kind),
        contact_id=contact_id,
        identity=identity,
        template_id=template_id,
        template_key=key,
        data=convert.variables(r.data),
        locale=locale_arg(r.locale),
        webhook_url=url_arg(r.webhook_url, "webhook_url") if r.webhook_url else "",
        request_id=r.request_id,
        cart_id=_optional_uuid(r.cart_id, "cart_id", "INVALID_CART_ID"),
        order_id=_optional_uuid(r.order_id, "order_id", "INVALID_ORDER_ID"),
    )


def _optional_uuid(value: str, field: str, reason: str) -> str:
    return calls.required_uuid(DOMAIN, value, field, reason) if value else ""


def _parse(data: Any, message: Any) -> Any:
    return json_format.ParseDict(data, message, ignore_unknown_fields=True)


def message_pb(t: Trail, address: str, redacted: bool) -> pb.Message:
    out = pb.Message(
        message_id=t.message_id,
        contact_id=t.contact_id,
        channel=epb.Channel.Value(t.channel),
        kind=epb.MessageKind.Value(t.kind),
        status=pb.MessageStatus.Value(t.status),
        decisions=[_parse(x, epb.MessageDecided()) for x in t.decisions],
        address="" if redacted else address,
        personal_data_redacted=redacted,
        test=t.test,
    )
    for at, type_, data in t.delivery:
        name = STEPS[type_]
        step = pb.DeliveryStep(time=calls.timestamp(at))
        getattr(step, name).CopyFrom(_parse(data, STEP_TYPES[name]()))
        out.delivery.append(step)
    if t.create_time is not None:
        out.create_time.CopyFrom(calls.timestamp(t.create_time))
    if t.update_time is not None:
        out.update_time.CopyFrom(calls.timestamp(t.update_time))
    return out


class MessageRpcs:
    """Mixed into NotificationsServicer; bound in app.py."""

    def bind_messages(
        self,
        commands: MessageCommands,
        queries: MessageQueries,
        audit: PersonalDataAudit,
        sender: SendQueue | None = None,
    ) -> None:
        """``sender`` decides SendMessage calls made together in batches (the commands alone,
        one by one, without it)."""
        self.messages, self.message_queries, self.audit = commands, queries, audit
        self.sender: MessageCommands | SendQueue = sender or commands

    async def _answer(self, trails: Sequence[Trail]) -> list[pb.Message]:
        shown = await self.audit.disclose(t.contact_id for t in trails)
        addresses = await self.message_queries.recipients([t.message_id for t in trails])
        return [message_pb(t, addresses.get(t.message_id, ""), not shown) for t in trails]

    async def SendMessage(
        self, request: pb.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendMessageResponse:
        asked = send_request(request)
        t = await self.sender.send(asked, calls.event_meta(request.request_id, context))
        # No address in the answer: it is the contact's personal data, read (and recorded) with
        # GetMessage by those who may see it.
        return pb.SendMessageResponse(message=message_pb(t, "", False))

    async def SendMessages(
        self, request: pb.SendMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendMessagesResponse:
        n = len(request.requests)
        if not 1 <= n <= MAX_BATCH:
            raise _invalid("requests", "INVALID_BATCH_SIZE", f"1 to {MAX_BATCH} requests")
        results: list[pb.SendResult | None] = [None] * n
        asked: list[tuple[int, SendRequest]] = []
        for i, r in enumerate(request.requests):
            try:
                asked.append((i, send_request(r)))
            except Exception as refused:
                results[i] = pb.SendResult(refusal=refusal_pb(refused))
        metas = [calls.event_meta(request.requests[i].request_id, context) for i, _ in asked]
        answers = await BatchSender(self.messages).send_many([a for _, a in asked], metas)
        for (i, _), answer in zip(asked, answers, strict=True):
            if isinstance(answer, Trail):
                results[i] = pb.SendResult(message=message_pb(answer, "", False))
            else:
                results[i] = pb.SendResult(refusal=refusal_pb(answer))
        return pb.SendMessagesResponse(results=[r for r in results if r is not None])

    async def SendTestMessage(
        self, request: pb.SendTestMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendTestMessageResponse:
        template_id, key = template_ref(request.template_id, request.template_key)
        if request.version < 0:
            raise _invalid("version", "INVALID_VERSION", "0 (the latest) or 1, 2, ...")
        locale = locale_arg(request.locale)
        if not request.address:
            raise _invalid("address", "INVALID_ADDRESS", "an email address, phone or URL")
        template = await self.messages.templates.get(template_id, key)
        address_arg(template.channel, request.address)
        t = await self.messages.send_test(
            template,
            request.version,
            request.address,
            convert.variables(request.variables),
            locale,
            request_id=request.request_id,
            meta=calls.event_meta(request.request_id, context),
        )
        return pb.SendTestMessageResponse(message=message_pb(t, request.address, False))

    async def GetMessage(
        self, request: pb.GetMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMessageResponse:
        mid = calls.required_uuid(DOMAIN, request.message_id, "message_id", "INVALID_MESSAGE_ID")
        t = await self.message_queries.get(mid)
        if t is None:
            raise NotFound("MESSAGE_NOT_FOUND", f"no message {mid}", message_id=mid)
        return pb.GetMessageResponse(message=(await self._answer([t]))[0])

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMessagesResponse:
        cid = calls.required_uuid(DOMAIN, request.contact_id, "contact_id", "INVALID_CONTACT_ID")
        size = calls.page_size(DOMAIN, request.page_size)
        channel = convert.channel_name(request.channel)
        kind = "" if not request.kind else epb.MessageKind.Name(request.kind)
        status = "" if not request.status else pb.MessageStatus.Name(request.status)
        page, token = await self.message_queries.page(
            cid, channel, kind, status, size, request.page_token
        )
        return pb.ListMessagesResponse(messages=await self._answer(page), next_page_token=token)


def refusal_pb(refused: BaseException) -> pb.Refusal:
    """A refused request of a batch as SendMessage's status would have told it."""
    error = to_service_error(refused)
    if error is None:
        raise refused
    return pb.Refusal(
        code=error.code.name,
        message=error.message,
        reason=error.reason,
        domain=error.domain or DOMAIN,
        metadata=error.metadata,
        field_violations=[pb.FieldViolation(field=f, description=d) for f, d in error.violations],
    )


def address_arg(channel: str, address: str) -> str:
    if channel == EMAIL and not EMAIL_ADDRESS.match(address):
        raise _invalid("address", "INVALID_ADDRESS", "an email address for an email template")
    if channel == SMS and not PHONE.match(address):
        raise _invalid("address", "INVALID_ADDRESS", "an E.164 phone number for an SMS template")
    if channel not in (EMAIL, SMS):
        url_arg(address, "address")
    return address
