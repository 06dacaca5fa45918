"""SendMessage, SendTestMessage and the decision again after a deferral: the facts are gathered
(contacts, orders, the template), the message rendered, then the decision written in one
transaction with the contact locked (application/deciding.py: a batch of one here; many at
once in application/batch_sending.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.notifications.application.deciding import Pending, decide_all
from services.notifications.application.facts import (
    Gathered,
    Given,
    Pipeline,
    gather,
)
from services.notifications.application.message_stream import MESSAGE, NS
from services.notifications.application.ports import (
    ContactFacts,
    Contacts,
    Deferred,
    Orders,
    PipelineTables,
)
from services.notifications.application.templates import TemplateCommands
from services.notifications.application.test_messages import TestMessageSender
from services.notifications.domain import decision as d
from services.notifications.domain import trail
from services.notifications.domain.template import Template
from services.notifications.domain.variant import WEBHOOK
from shared.application import commands as command_runner
from shared.application.commands import CommandRunner, new_id
from shared.domain.errors import Invalid, NotFound, Precondition
from shared.eventstore import EventStore


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SendRequest:
    kind: str
    contact_id: str = ""
    identity: tuple[str, str] | None = None  # (email | phone | external_id, value)
    template_id: str = ""
    template_key: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    locale: str = ""
    webhook_url: str = ""
    request_id: str = ""
    cart_id: str = ""  # read from orders as the template's `cart`
    order_id: str = ""  # read from orders as the template's `order`
    origin: d.Origin = field(default_factory=d.Origin)  # a flow step or a campaign


def check_webhook(request: SendRequest, template: Template) -> None:
    """A webhook URL exactly for webhook templates."""
    if template.channel == WEBHOOK and not request.webhook_url:
        raise Invalid([("webhook_url", "WEBHOOK_URL_REQUIRED", "a webhook template needs it")])
    if template.channel != WEBHOOK and request.webhook_url:
        raise Invalid([("webhook_url", "WEBHOOK_URL_UNUSED", "only for webhook templates")])


class MessageCommands:
    def __init__(
        self,
        store: EventStore,
        tables: PipelineTables,
        contacts: Contacts,
        orders: Orders,
        templates: TemplateCommands,
        pipeline: Pipeline,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.store, self.tables, self.contacts, self.orders = store, tables, contacts, orders
        self.templates, self.pipeline, self.clock = templates, pipeline, clock
        self.runner = CommandRunner(store)

    async def get(self, message_id: str) -> trail.Trail:
        return await self.runner.get(MESSAGE, message_id)

    def _earlier(
        self, message_id: str, request_id: str, meta: Mapping[str, Any]
    ) -> Callable[[], Awaitable[trail.Trail | None]]:
        """What an earlier execution of the request answered (the runner's replay rule)."""

        async def earlier() -> trail.Trail | None:
            fingerprint = meta.get(command_runner.FINGERPRINT, "")
            done = await self.runner.earlier(MESSAGE, message_id, request_id, fingerprint)
            return done.state if done is not None else None

        return earlier

    async def template(self, template_id: str, key: str) -> Template:
        """The template to send (NOT_FOUND; FAILED_PRECONDITION when archived)."""
        t = await self.templates.get(template_id, key)
        if t.archived:
            raise Precondition("TEMPLATE_ARCHIVED", f"template {t.key} is archived")
        return t

    async def contact_id(self, request: SendRequest) -> str:
        """The contact asked for (by id, or found by its identity)."""
        if request.contact_id:
            return request.contact_id
        assert request.identity is not None
        kind, value = request.identity
        found = await self.contacts.find(kind, value)
        if found is None:
            raise NotFound("CONTACT_NOT_FOUND", f"no contact with this {kind}", field=kind)
        return found

    async def _decide(
        self,
        subject: d.Subject,
        facts: Gathered,
        number: int,
        key: str,
        meta: Mapping[str, Any],
        loaded: trail.Trail | None,
        later: Deferred,
    ) -> trail.Trail:
        """One decision's transaction (application/deciding.py, a batch of one)."""
        pending = Pending(subject, facts, number, key, meta, loaded, later)
        return (await decide_all(self.tables, self.pipeline, self.clock, [pending]))[0]

    def pending(
        self,
        request: SendRequest,
        message_id: str,
        requested: str,
        template: Template,
        facts: Gathered,
        request_id: str,
        meta: Mapping[str, Any],
    ) -> Pending:
        """A new message's first decision to write: ``requested`` is the contact asked for,
        ``facts`` what was gathered for it (the survivor's when merged), ``request_id`` the
        request id its event's id derives from."""
        version = template.latest.version
        subject = d.Subject(
            message_id=message_id,
            contact_id=facts.contact.contact_id,
            requested_contact_id=requested,
            channel=template.channel,
            kind=request.kind,
            template_id=template.template_id,
            template_version=version,
            origin=request.origin,
            request_id=request.request_id,
        )
        later = Deferred(
            message_id=message_id,
            decision=2,
            due_at=self.clock(),
            requested_contact_id=requested,
            template_id=template.template_id,
            template_version=version,
            kind=request.kind,
            locale=request.locale,
            webhook_url=request.webhook_url,
            request_id=request.request_id,
            data=dict(request.data),
            cart_id=request.cart_id,
            order_id=request.order_id,
        )
        return Pending(subject, facts, 1, request_id, meta, None, later)

    async def send(self, request: SendRequest, meta: Mapping[str, Any] = {}) -> trail.Trail:
        """SendMessage: the message with its first decision (the first answer on a retry)."""
        request_id = request.request_id or uuid.uuid4().hex
        message_id = new_id(NS, "message", request.request_id)
        earlier = self._earlier(message_id, request_id, meta)

        # An earlier answer and the template are read at once (one round trip on every call);
        # the earlier answer wins, whatever became of the template since.
        done, template = await asyncio.gather(
            earlier(), self.template(request.template_id, request.template_key),
            return_exceptions=True,
        )  # fmt: skip
        if isinstance(done, BaseException):
            raise done
        if done is not None:
            return done
        if isinstance(template, BaseException):
            raise template
        check_webhook(request, template)
        requested = await self.contact_id(request)
        version = template.latest.version

        async def attempt(_n: int) -> trail.Trail:
            facts = await gather(
                self.contacts,
                self.orders,
                requested,
                template,
                version,
                request.locale,
                Given(request.data, request.webhook_url, request.cart_id, request.order_id),
            )
            if facts is None:
                raise NotFound("CONTACT_NOT_FOUND", f"no contact {requested}", field="contact_id")
            pending = self.pending(
                request, message_id, requested, template, facts, request_id, meta
            )
            return (await decide_all(self.tables, self.pipeline, self.clock, [pending]))[0]

        return await self.runner.retrying(attempt, earlier)

    async def decide_again(self, timer: Deferred, meta: Mapping[str, Any]) -> bool:
        """A deferred message's timer is due: decide it again (consent, caps and the profile
        may have changed), once: the event's id derives from the timer, appended at the stream
        version read, in the transaction that deletes the timer. False when already done."""
        state = await self.runner.get(MESSAGE, timer.message_id)
        if len(state.decisions) >= timer.decision:
            return False
        template = await self.templates.get(timer.template_id)
        first = state.decisions[0]
        facts = await gather(
            self.contacts,
            self.orders,
            timer.requested_contact_id,
            template,
            timer.template_version,
            timer.locale,
            Given(timer.data, timer.webhook_url, timer.cart_id, timer.order_id),
        )
        if facts is None:  # contacts never forgets a contact; should it, the message is moot
            facts = Gathered(ContactFacts(state.contact_id, erased=True), None, "", None, None)
        subject = d.Subject(
            message_id=timer.message_id,
            contact_id=facts.contact.contact_id,
            requested_contact_id=timer.requested_contact_id,
            channel=state.channel,
            kind=state.kind,
            template_id=timer.template_id,
            template_version=timer.template_version,
            origin=d.Origin.from_data(first.get("trigger", {})),
            request_id=str(first.get("trigger", {}).get("request_id", "")),
        )
        key = f"timer:{timer.message_id}:{timer.decision}"
        try:
            await self._decide(subject, facts, timer.decision, key, meta, state, timer)
        except command_runner.CONFLICT:  # another replica decided it first (its commit won)
            return False
        return True

    async def send_test(
        self,
        template: Template,
        version: int,
        address: str,
        variables: Mapping[str, Any],
        locale: str,
        *,
        request_id: str = "",
        meta: Mapping[str, Any] = {},
    ) -> trail.Trail:
        """SendTestMessage (application/test_messages.py)."""
        sender = TestMessageSender(
            self.runner, self.tables, self.templates, self.pipeline, self.clock
        )
        return await sender.send(
            template, version, address, variables, locale, request_id=request_id, meta=meta
        )
