"""Many SendMessage requests decided together, each exactly as ``MessageCommands.send`` would
decide it alone, for a fraction of the cost: one read of the messages' streams (an earlier
answer), each template once, the contacts and their consents in two calls to contacts, then
one transaction for the whole batch (application/deciding.py).

A request with an earlier answer (its message exists) goes the single way, which answers it
by the runner's replay rule; so does the whole batch when its transaction meets a conflict
(a message written meanwhile by a concurrent retry): nothing of the batch was written, and
each request then finds its own answer. A request refused (unknown contact or template, a
webhook URL where none belongs, a cart that is not the contact's...) is answered with its
error; contacts or orders out of reach fail the batch (UNAVAILABLE: try it again)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from services.notifications.application.deciding import Pending, decide_all
from services.notifications.application.facts import Ask, Given, gather_many
from services.notifications.application.message_stream import NS
from services.notifications.application.sending import MessageCommands, SendRequest, check_webhook
from services.notifications.domain import decision as d
from services.notifications.domain import trail
from services.notifications.domain.template import Template
from shared.application import commands as command_runner
from shared.application.commands import new_id
from shared.domain.errors import DomainError, NotFound
from shared.grpckit.errors import ServiceError, Unavailable

Answer = trail.Trail | Exception  # a message, or its request's refusal (``refusal``)


def refusal(err: BaseException) -> Exception:
    """A request's own refusal (a request id reused for another request among them); anything
    else (UNAVAILABLE among them) fails the batch."""
    own = DomainError | ServiceError | command_runner.RequestIdReused
    if isinstance(err, own) and not isinstance(err, Unavailable):
        return err
    raise err


class BatchSender:
    """``send_many`` on a service's commands: the campaign engine's sender."""

    def __init__(self, commands: MessageCommands) -> None:
        self.commands = commands

    async def send_many(
        self, requests: Sequence[SendRequest], metas: Sequence[Mapping[str, Any]]
    ) -> list[Answer]:
        return await send_many(self.commands, requests, metas)


async def send_many(
    commands: MessageCommands,
    requests: Sequence[SendRequest],
    metas: Sequence[Mapping[str, Any]],
) -> list[Answer]:
    """Each request's message with its first decision, or its refusal, in request order."""
    answers: list[Answer | None] = [None] * len(requests)
    message_ids = [new_id(NS, "message", r.request_id) for r in requests]
    heads = await commands.store.read_heads([d.stream_of(m) for m in message_ids])
    alone = [i for i, m in enumerate(message_ids) if d.stream_of(m) in heads]
    fresh = [i for i in range(len(requests)) if d.stream_of(message_ids[i]) not in heads]

    templates = await _templates(commands, [requests[i] for i in fresh])
    requested = await asyncio.gather(
        *(commands.contact_id(requests[i]) for i in fresh), return_exceptions=True
    )
    asks: list[tuple[int, str, Template]] = []
    for i, who in zip(fresh, requested, strict=True):
        r = requests[i]
        template = templates[(r.template_id, r.template_key)]
        try:
            if isinstance(template, BaseException):
                raise template
            if isinstance(who, BaseException):
                raise who
            check_webhook(r, template)
        except BaseException as err:
            answers[i] = refusal(err)
            continue
        asks.append((i, who, template))

    gathered = await gather_many(
        commands.contacts,
        commands.orders,
        [
            Ask(who, t, t.latest.version, requests[i].locale, _given(requests[i]))
            for i, who, t in asks
        ],
    )
    batch: list[tuple[int, Pending]] = []
    for (i, who, template), facts in zip(asks, gathered, strict=True):
        if facts is None:
            answers[i] = NotFound("CONTACT_NOT_FOUND", f"no contact {who}", field="contact_id")
        elif isinstance(facts, Exception):
            answers[i] = facts
        else:
            r = requests[i]
            rid = r.request_id or message_ids[i]
            p = commands.pending(r, message_ids[i], who, template, facts, rid, metas[i])
            batch.append((i, p))
    if batch:
        try:
            trails = await decide_all(
                commands.tables, commands.pipeline, commands.clock, [p for _, p in batch]
            )
        except command_runner.CONFLICT:
            alone.extend(i for i, _ in batch)
        else:
            for (i, _), t in zip(batch, trails, strict=True):
                answers[i] = t

    async def one(i: int) -> None:
        try:
            answers[i] = await commands.send(requests[i], metas[i])
        except BaseException as err:
            answers[i] = refusal(err)

    await asyncio.gather(*(one(i) for i in sorted(alone)))
    done = [a for a in answers if a is not None]
    assert len(done) == len(requests), "every request answered"
    return done


async def _templates(
    commands: MessageCommands, requests: Sequence[SendRequest]
) -> dict[tuple[str, str], Template | BaseException]:
    """Each template named once (by id or key), or why it cannot be sent."""
    named = list(dict.fromkeys((r.template_id, r.template_key) for r in requests))
    found = await asyncio.gather(
        *(commands.template(tid, key) for tid, key in named), return_exceptions=True
    )
    return dict(zip(named, found, strict=True))


def _given(r: SendRequest) -> Given:
    return Given(r.data, r.webhook_url, r.cart_id, r.order_id)
