"""Many SendMessage requests decided together (application/batch_sending.py) answer exactly as
the same requests decided one by one: the same outcomes and reasons in the same order (caps and
smart sending counting the batch's own earlier sends), the same rows; refusals are each
request's own; an earlier answer is answered again, not decided again; a conflict with a
concurrent batch loses nothing and doubles nothing. The SendQueue batches concurrent calls."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from services.notifications.application.batch_sending import send_many
from services.notifications.application.send_queue import SendQueue
from services.notifications.application.sending import SendRequest
from services.notifications.domain import policy
from services.notifications.domain.trail import Trail
from services.notifications.domain.variant import EMAIL, SMS
from services.notifications.tests.pipeline_env import Pipe, build
from shared.domain.errors import DomainError, Invalid, NotFound
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.errors import FailedPrecondition, Unavailable

STATES = [policy.SUBSCRIBED] * 3 + ["CONSENT_STATE_UNSUBSCRIBED", "CONSENT_STATE_NEVER_SUBSCRIBED"]


def _id(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


ALONE = 1000  # the one-by-one side's contacts: the batch's, their numbers shifted


@pytest.fixture
async def two(dsn: str) -> AsyncIterator[tuple[Pipe, Pipe]]:
    """Two pipelines on one store: one decides in batches, the other one by one, each with
    its own contacts (the same people under other ids) and its own templates."""
    store = await PostgresEventStore.connect(dsn, max_size=10)
    try:
        yield build(store), build(store)
    finally:
        await store.close()


def _world(rng: random.Random, pipes: tuple[Pipe, Pipe]) -> None:
    """The same contacts in both: consent states drawn, some erased, archived or merged."""
    for n in range(12):
        extra: dict[str, Any] = {}
        roll = rng.random()
        if roll < 0.1:
            extra["erased"] = True
        elif roll < 0.2:
            extra["archived"] = True
        for shift, p in zip((0, ALONE), pipes, strict=True):
            email, phone = f"c{n}@example.com", f"+3361234560{n:02d}"
            p.contacts.add(_id(n + shift), email=email, phone=phone, **extra)
        for channel in (EMAIL, SMS):
            state = rng.choice(STATES)
            for shift, p in zip((0, ALONE), pipes, strict=True):
                p.contacts.subscribe(_id(n + shift), channel, state)
    for shift, p in zip((0, ALONE), pipes, strict=True):
        p.contacts.merged[_id(20 + shift)] = _id(shift)  # merged: decided for its survivor


def _shifted(r: SendRequest, templates: dict[str, str]) -> SendRequest:
    """The request as the one-by-one side asks it."""
    who = str(uuid.UUID(int=uuid.UUID(r.contact_id).int + ALONE))
    key = templates[r.template_key]
    return replace(r, contact_id=who, template_key=key, request_id=f"alone-{r.request_id}")


def _requests(rng: random.Random, templates: dict[str, str]) -> list[SendRequest]:
    out = []
    for i in range(60):
        who = rng.choice([_id(n) for n in range(12)] + [_id(20), _id(99)])  # 99: unknown
        channel = rng.choice([EMAIL, SMS])
        out.append(
            SendRequest(
                kind=rng.choice([policy.MARKETING] * 3 + [policy.TRANSACTIONAL]),
                contact_id=who,
                template_key=templates[channel],
                data={"offer": f"o{i}"},
                request_id=f"req-{i}",
                webhook_url="https://hooks.example/x" if rng.random() < 0.05 else "",
            )
        )
    return out


def _seen(answer: Trail | BaseException) -> tuple[str, ...]:
    if isinstance(answer, BaseException):
        return (type(answer).__name__, getattr(answer, "reason", ""))
    last = answer.last_decision
    return (answer.status, str(last["outcome"]), str(last.get("reason", "")))


async def _rows(p: Pipe, table: str, answers: list[Any]) -> int:
    mine = {a.message_id for a in answers if isinstance(a, Trail)}
    return sum(str(r["message_id"]) in mine for r in await p.rows(table))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_batch_decides_as_one_by_one_would(two: tuple[Pipe, Pipe], seed: int) -> None:
    rng = random.Random(seed)
    _world(rng, two)
    batched, alone = two
    keys = {f"{k}-{seed}": f"{k}-{seed}-alone" for k in ("email", "sms")}
    for key, channel in zip(keys, (EMAIL, SMS), strict=True):
        await batched.template(key, channel)
        await alone.template(keys[key], channel)
    requests = _requests(rng, {EMAIL: f"email-{seed}", SMS: f"sms-{seed}"})
    answers = await send_many(batched.messages, requests, [{}] * len(requests))
    expected: list[Trail | BaseException] = []
    for r in requests:
        try:
            expected.append(await alone.messages.send(_shifted(r, keys)))
        except DomainError as refused:
            expected.append(refused)
    assert [_seen(a) for a in answers] == [_seen(e) for e in expected]
    for table in ("outbox", "marketing_sends", "recipients", "timers"):
        assert await _rows(batched, table, answers) == await _rows(alone, table, expected)
    outcomes = {a[1] for a in map(_seen, answers) if len(a) == 3}
    assert policy.SEND in outcomes and policy.SKIP in outcomes  # the draw tried both
    assert len(batched.contacts.batches) == 1  # the contacts read once for the whole batch


async def test_refusals_are_each_requests_own(pipe: Pipe) -> None:
    t = await pipe.template()
    ok = SendRequest(kind=policy.MARKETING, contact_id=pipe.contacts.add().contact_id,
                     template_id=t.template_id, data={"offer": "tea"}, request_id="ok")  # fmt: skip
    unknown = SendRequest(kind=policy.MARKETING, contact_id=_id(7), template_id=t.template_id,
                          request_id="unknown")  # fmt: skip
    hook = SendRequest(kind=policy.MARKETING, contact_id=ok.contact_id, template_id=t.template_id,
                       webhook_url="https://hooks.example/a", request_id="hook")  # fmt: skip
    no_template = SendRequest(kind=policy.MARKETING, contact_id=ok.contact_id,
                              template_key="missing", request_id="no-template")  # fmt: skip
    answers = await send_many(pipe.messages, [ok, unknown, hook, no_template], [{}] * 4)
    assert isinstance(answers[0], Trail) and answers[0].status == "MESSAGE_STATUS_QUEUED"
    assert isinstance(answers[1], NotFound) and answers[1].reason == "CONTACT_NOT_FOUND"
    assert isinstance(answers[2], Invalid)
    assert isinstance(answers[3], NotFound)
    assert len(await pipe.rows("outbox")) == 1


async def test_an_earlier_answer_is_answered_not_decided_again(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template()
    first = await pipe.send(t, request_id="again")
    request = SendRequest(kind=policy.MARKETING, contact_id=first.contact_id,
                          template_id=t.template_id, data={"offer": "tea"}, request_id="again")  # fmt: skip
    [answer] = await send_many(pipe.messages, [request], [{}])
    assert isinstance(answer, Trail) and answer.message_id == first.message_id
    assert len(await pipe.events(first.message_id)) == 1
    assert len(await pipe.rows("outbox")) == 1


async def test_racing_batches_of_the_same_requests_decide_each_once(pipe: Pipe) -> None:
    ids = [pipe.contacts.add(_id(n), email=f"r{n}@example.com").contact_id for n in range(20)]
    t = await pipe.template()
    requests = [
        SendRequest(
            kind=policy.MARKETING,
            contact_id=c,
            template_id=t.template_id,
            data={"offer": "tea"},
            request_id=f"race-{c}",
        )
        for c in ids
    ]
    a, b = await asyncio.gather(
        send_many(pipe.messages, requests, [{}] * 20),
        send_many(pipe.messages, list(reversed(requests)), [{}] * 20),
    )
    assert [_seen(x) for x in a] == [_seen(x) for x in reversed(b)]
    assert len(await pipe.rows("outbox")) == 20
    for answer in a:
        assert isinstance(answer, Trail)
        assert len(await pipe.events(answer.message_id)) == 1


async def test_the_queue_batches_concurrent_calls_and_answers_each(pipe: Pipe) -> None:
    ids = [pipe.contacts.add(_id(n), email=f"q{n}@example.com").contact_id for n in range(30)]
    t = await pipe.template()
    queue = SendQueue(pipe.messages, max_batch=10, concurrency=2)

    async def one(c: str) -> Trail:
        request = SendRequest(kind=policy.MARKETING, contact_id=c, template_id=t.template_id,
                              data={"offer": c}, request_id=f"q-{c}")  # fmt: skip
        return await queue.send(request)

    answers = await asyncio.gather(*(one(c) for c in ids))
    assert [a.contact_id for a in answers] == ids
    assert all(a.status == "MESSAGE_STATUS_QUEUED" for a in answers)
    rows = {str(r["contact_id"]): r["text"] for r in await pipe.rows("outbox")}
    assert all(rows[c] == f"Hello Ada: {c}" for c in ids)  # each its own data
    assert 2 < len(pipe.contacts.batches) < 30  # batched, and at most 10 a batch
    assert max(len(b) for b in pipe.contacts.batches) <= 10


async def test_the_queue_gives_a_failed_batch_to_each_caller(pipe: Pipe) -> None:
    pipe.contacts.add()
    t = await pipe.template()

    async def down(_ids: Any) -> Any:
        raise Unavailable("UPSTREAM_UNAVAILABLE", "contacts away", domain="notifications.crm")

    pipe.contacts.get_many = down  # type: ignore[method-assign, assignment]
    queue = SendQueue(pipe.messages)
    request = SendRequest(kind=policy.MARKETING, contact_id=_id(0), template_id=t.template_id)
    results = await asyncio.gather(queue.send(request), queue.send(request),
                                   return_exceptions=True)  # fmt: skip
    assert all(isinstance(r, Unavailable) for r in results)
    assert await pipe.rows("outbox") == []


async def test_an_upstream_refusal_is_its_requests_and_an_outage_the_batchs(pipe: Pipe) -> None:
    ada = pipe.contacts.add().contact_id
    t = await pipe.template(text="Hello {{ contact.first_name }}: {{ data.offer }}")
    refused_cart, away_cart = str(uuid.UUID(int=500)), str(uuid.UUID(int=501))
    original = pipe.orders.cart

    async def cart(cart_id: str) -> Any:
        if cart_id == refused_cart:
            raise FailedPrecondition("ORDERS_REFUSED", "orders said no", domain="orders.crm")
        if cart_id == away_cart:
            raise Unavailable("ORDERS_UNAVAILABLE", "orders away", domain="notifications.crm")
        return await original(cart_id)

    pipe.orders.cart = cart  # type: ignore[method-assign]

    def request(rid: str, cart_id: str = "") -> SendRequest:
        return SendRequest(kind=policy.TRANSACTIONAL, contact_id=ada, template_id=t.template_id,
                           data={"offer": "tea"}, request_id=rid, cart_id=cart_id)  # fmt: skip

    answers = await send_many(
        pipe.messages, [request("u-1", refused_cart), request("u-2")], [{}] * 2
    )
    assert isinstance(answers[0], FailedPrecondition) and answers[0].reason == "ORDERS_REFUSED"
    assert isinstance(answers[1], Trail) and answers[1].status == "MESSAGE_STATUS_QUEUED"
    with pytest.raises(Unavailable):
        await send_many(pipe.messages, [request("u-3", away_cart), request("u-4")], [{}] * 2)
    assert len(await pipe.rows("outbox")) == 1  # nothing of the failed batch
