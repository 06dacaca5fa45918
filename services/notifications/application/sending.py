"""SendMessage, SendTestMessage and the decision again after a deferral: the facts are gathered
(contacts, orders, the template), the message rendered, then in ONE transaction with the
contact locked: the marketing sends counted, the policy decided, MessageDecided appended and,
for SEND, the outbox row, the recipient and the marketing send written (for DEFER, the timer).
Two concurrent decisions for one contact therefore never both pass a cap."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from services.notifications.application.facts import (
    Gathered,
    Given,
    Pipeline,
    enqueue,
    gather,
    outbox_row,
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
from services.notifications.domain import policy, trail
from services.notifications.domain.template import Template
from services.notifications.domain.variant import WEBHOOK, metric_label
from shared.application import commands as command_runner
from shared.application.commands import CommandRunner, apply, new_id
from shared.domain.errors import Invalid, NotFound, Precondition
from shared.eventstore import EventStore, StreamAppend, StreamState
from shared.metrics import NOTIFICATIONS_SENT


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

    async def _template(self, template_id: str, key: str) -> Template:
        t = await self.templates.get(template_id, key)
        if t.archived:
            raise Precondition("TEMPLATE_ARCHIVED", f"template {t.key} is archived")
        return t

    async def _contact_id(self, request: SendRequest) -> str:
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
        """One decision's transaction (see the module's docstring); ``key`` is the request id
        the event's id derives from, ``loaded`` the stream as read (None: a new message)."""
        rules = self.pipeline.rules
        contact = facts.contact
        marketing = subject.kind == policy.MARKETING
        stream = d.stream_of(subject.message_id)
        async with self.tables.deciding(contact.contact_id) as tx:
            now = self.clock()
            count, last = 0, None
            if marketing:
                since = now - rules.cap_window
                count, last = await tx.marketing_sends(contact.contact_id, subject.channel, since)
            consent = facts.consent or d.ConsentUsed()
            policy_facts = policy.Facts(
                channel=subject.channel,
                kind=subject.kind,
                now=now,
                erased=contact.erased,
                archived=contact.archived,
                address=facts.address,
                consent_state=consent.state,
                suppressed=consent.suppressed,
                sends_in_window=count,
                last_marketing_send=last,
                time_zone=contact.time_zone,
            )
            verdict = policy.decide(policy_facts, rules)
            detail = ""
            if verdict.outcome == policy.SEND and facts.failure is not None:
                verdict, detail = d.render_failed(verdict), d.failure_detail(facts.failure)
            if facts.rendered is not None:
                subject = replace(subject, locale=facts.rendered.locale)
            event = d.decided(
                subject, policy_facts, verdict, consent=facts.consent, number=number, detail=detail
            )
            expected = loaded.version if loaded is not None else StreamState.NO_STREAM
            own = MESSAGE.events(stream, [event], key, meta)
            await tx.append([StreamAppend(stream, own, expected)])
            if loaded is not None:
                await tx.fired(subject.message_id)
            if verdict.outcome == policy.SEND:
                assert facts.rendered is not None
                row = outbox_row(self.pipeline, now, subject, facts.address, facts.rendered)
                await enqueue(tx, self.pipeline, row, now if marketing else None)
            elif verdict.outcome == policy.DEFER:
                assert verdict.defer_until is not None
                await tx.defer(replace(later, decision=number + 1, due_at=verdict.defer_until))
        if verdict.reason == policy.SUPPRESSED:
            label = metric_label(subject.channel)
            NOTIFICATIONS_SENT.labels(channel=label, outcome="suppressed").inc()
        return apply(MESSAGE, loaded, [event], now, (loaded.version if loaded else -1) + 1)

    async def send(self, request: SendRequest, meta: Mapping[str, Any] = {}) -> trail.Trail:
        """SendMessage: the message with its first decision (the first answer on a retry)."""
        request_id = request.request_id or uuid.uuid4().hex
        message_id = new_id(NS, "message", request.request_id)
        earlier = self._earlier(message_id, request_id, meta)

        # An earlier answer and the template are read at once (one round trip on every call);
        # the earlier answer wins, whatever became of the template since.
        done, template = await asyncio.gather(
            earlier(), self._template(request.template_id, request.template_key),
            return_exceptions=True,
        )  # fmt: skip
        if isinstance(done, BaseException):
            raise done
        if done is not None:
            return done
        if isinstance(template, BaseException):
            raise template
        if template.channel == WEBHOOK and not request.webhook_url:
            raise Invalid([("webhook_url", "WEBHOOK_URL_REQUIRED", "a webhook template needs it")])
        if template.channel != WEBHOOK and request.webhook_url:
            raise Invalid([("webhook_url", "WEBHOOK_URL_UNUSED", "only for webhook templates")])
        requested = await self._contact_id(request)
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
            return await self._decide(subject, facts, 1, request_id, meta, None, later)

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
