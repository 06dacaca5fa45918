"""What a decision reads before its transaction: the contact (the survivor when merged), its
consent on the channel, its address, and the message rendered with the contact's profile, the
customer's metrics (when the template reads them), the cart or the order the message is about
(when the request names one: it must be the contact's) and the trigger's data; and the outbox
row a SEND writes. The settings the pipeline renders with."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.notifications.application.ports import (
    ContactFacts,
    Contacts,
    Deciding,
    Orders,
    Queued,
)
from services.notifications.domain import decision as d
from services.notifications.domain import links, message, policy
from services.notifications.domain.render import RenderFailure
from services.notifications.domain.template import Template
from services.notifications.domain.tracking import TrackingTokens
from services.notifications.domain.unsubscribe import Unsubscribe
from services.notifications.domain.variant import EMAIL, SMS, WEBHOOK
from shared.domain.errors import DomainError, NotFound, Precondition
from shared.grpckit.errors import ServiceError, Unavailable

NEVER_SUBSCRIBED = d.ConsentUsed(state="CONSENT_STATE_NEVER_SUBSCRIBED")


@dataclass(frozen=True)
class Pipeline:
    """The settings the pipeline decides and renders with."""

    rules: policy.Rules = field(default_factory=policy.Rules)
    email_from: str = ""
    sms_from: str = ""
    unsubscribe: Unsubscribe | None = None  # List-Unsubscribe on marketing email when set
    tracking: TrackingTokens | None = None  # opens and clicks of HTML email when set


@dataclass(frozen=True)
class Given:
    """What the request gives the message besides the contact and the template."""

    data: Mapping[str, Any] = field(default_factory=dict)  # the trigger's, read as `data`
    webhook_url: str = ""
    cart_id: str = ""  # read from orders as `cart`
    order_id: str = ""  # read from orders as `order`


@dataclass(frozen=True)
class Gathered:
    """What a decision reads besides the locked counters."""

    contact: ContactFacts
    consent: d.ConsentUsed | None
    address: str
    rendered: message.Rendered | None
    failure: RenderFailure | None


async def gather(
    contacts: Contacts,
    orders: Orders,
    contact_id: str,
    template: Template,
    version: int,
    locale: str,
    given: Given,
) -> Gathered | None:
    """The facts for a decision; None when contacts knows no such contact. A render failure is
    a fact too (the decision turns a SEND into a skip, RENDER_FAILED)."""
    contact, consent = await _contact_and_consent(contacts, contact_id, template.channel)
    if contact is None:
        return None
    return await prepare(orders, contact_id, contact, consent, template, version, locale, given)


@dataclass(frozen=True)
class Ask:
    """One message of a batch: for whom (the id asked for), with what."""

    contact_id: str
    template: Template
    version: int
    locale: str
    given: Given


async def gather_many(
    contacts: Contacts, orders: Orders, asks: Sequence[Ask]
) -> list[Gathered | Exception | None]:
    """``gather`` for a batch: the contacts and their consents read in two calls (a third for
    the survivors of merged ones), each message then rendered; a refusal (a cart not the
    contact's...) is that message's answer, not the batch's."""
    ids = list(dict.fromkeys(a.contact_id for a in asks))
    found, consents = await asyncio.gather(contacts.get_many(ids), contacts.consents(ids))
    survivors = {c.contact_id for c in found.values() if not c.erased} - consents.keys()
    if survivors:
        consents = {**consents, **await contacts.consents(sorted(survivors))}

    async def one(a: Ask) -> Gathered | Exception | None:
        contact = found.get(a.contact_id)
        if contact is None:
            return None
        channel = a.template.channel
        consent = None
        if channel in policy.CONSENTED_CHANNELS and not contact.erased:
            consent = consents.get(contact.contact_id, {}).get(channel, NEVER_SUBSCRIBED)
        try:
            return await prepare(
                orders, a.contact_id, contact, consent, a.template, a.version, a.locale, a.given
            )
        except (DomainError, ServiceError) as refused:
            if isinstance(refused, Unavailable):
                raise  # orders away: the batch's failure, not this message's
            return refused

    return list(await asyncio.gather(*(one(a) for a in asks)))


async def prepare(
    orders: Orders,
    contact_id: str,
    contact: ContactFacts,
    consent: d.ConsentUsed | None,
    template: Template,
    version: int,
    locale: str,
    given: Given,
) -> Gathered:
    """The rest of a decision's facts once the contact and its consent are known: the
    address, what orders says (when the template or the request needs it), the rendering."""
    channel = template.channel
    address = {EMAIL: contact.email, SMS: contact.phone, WEBHOOK: given.webhook_url}[channel]
    chosen = template.at(version)
    wanted = locale or contact.locale
    used = message.fields_read_by(chosen, wanted, "contact")  # only what the template reads
    profile = {k: v for k, v in contact.profile.items() if used is None or k in used}
    variables: dict[str, Any] = {"contact": profile, "data": dict(given.data)}
    if not contact.erased:
        if "metrics" in message.names_read_by(chosen, wanted):
            variables["metrics"] = await orders.metrics(contact.contact_id)
        owners = {contact_id, contact.contact_id}  # the survivor's, or the merged contact's
        if given.cart_id:
            variables["cart"] = _owned(await orders.cart(given.cart_id), "cart", owners)
        if given.order_id:
            variables["order"] = _owned(await orders.order(given.order_id), "order", owners)
    try:
        rendered = message.render(channel, chosen, wanted, variables)
        return Gathered(contact, consent, address, rendered, None)
    except RenderFailure as failure:
        return Gathered(contact, consent, address, None, failure)


def _owned(found: dict[str, Any] | None, kind: str, owners: set[str]) -> dict[str, Any]:
    """A cart or an order the message may show: it exists and is the contact's."""
    name = kind.upper()
    if found is None:
        raise NotFound(f"{name}_NOT_FOUND", f"orders knows no such {kind}", field=f"{kind}_id")
    if found.get("contact_id") not in owners:
        raise Precondition(f"{name}_NOT_THE_CONTACTS", f"the {kind} is another contact's")
    return found


async def _contact_and_consent(
    contacts: Contacts, contact_id: str, channel: str
) -> tuple[ContactFacts | None, d.ConsentUsed | None]:
    """The contact (the survivor when merged) and, for a consented channel and a contact not
    erased, its consent there. Both are asked at once (one round trip to contacts instead of
    two, on every decision): the consent asked for ``contact_id`` is used when the contact is
    that id; for a merged one the survivor's is asked next, for an erased or unknown one none
    is used (and a failure of the early question is not one of this decision)."""
    if channel not in policy.CONSENTED_CHANNELS:
        return await contacts.get(contact_id), None
    early = asyncio.ensure_future(contacts.consent(contact_id, channel))
    try:
        contact = await contacts.get(contact_id)
    except BaseException:
        early.cancel()
        await asyncio.gather(early, return_exceptions=True)
        raise
    if contact is None or contact.erased or contact.contact_id != contact_id:
        early.cancel()
        await asyncio.gather(early, return_exceptions=True)
        if contact is None or contact.erased:
            return contact, None
        return contact, await contacts.consent(contact.contact_id, channel)
    return contact, await early


def outbox_row(
    p: Pipeline, now: datetime, subject: d.Subject, address: str, r: message.Rendered
) -> Queued:
    """The outbox row of a SEND: the rendered message, its sender and headers, due now."""
    headers: tuple[tuple[str, str], ...] = ()
    if r.channel == EMAIL and subject.kind == policy.MARKETING and p.unsubscribe:
        headers = p.unsubscribe.headers(subject.message_id)
    sender = {EMAIL: p.email_from, SMS: p.sms_from}.get(r.channel, "")
    return Queued(
        message_id=subject.message_id,
        contact_id=subject.contact_id,
        channel=r.channel,
        address=address,
        due_at=now,
        sender=sender,
        subject=r.subject,
        text=r.text,
        html=r.html,
        body=r.body,
        headers=headers,
        test=subject.test,
    )


def with_tracking(p: Pipeline, row: Queued) -> tuple[Queued, tuple[links.Link, ...]]:
    """An email's HTML with its links tracked and the open pixel (when tracking is on), and the
    links to record; the text part keeps the original URLs."""
    if p.tracking is None or row.channel != EMAIL or not row.html:
        return row, ()
    tracked = links.track(row.html, row.message_id, p.tracking)
    return replace(row, html=tracked.html), tracked.links


async def enqueue(
    tx: Deciding, p: Pipeline, rows: Sequence[tuple[Queued, datetime | None]]
) -> None:
    """Outbox rows, tracked (``with_tracking``), each with the instant its marketing send counts
    from (None: not marketing), and their links, in the decisions' transaction."""
    queued: list[tuple[Queued, datetime | None]] = []
    tracked: list[tuple[str, str, links.Link]] = []
    for row, marketing_send_at in rows:
        row, found = with_tracking(p, row)
        queued.append((row, marketing_send_at))
        tracked.extend((row.message_id, row.contact_id, link) for link in found)
    await tx.enqueue(queued)
    if tracked:
        await tx.record_links(tracked)
