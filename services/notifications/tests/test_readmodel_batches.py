"""The messages read model does not depend on batch boundaries: random sequences of sends
(marketing and transactional, email and SMS: sent, skipped, deferred into quiet hours), the
dispatcher's outcomes (sent, retried, rejected), deferred decisions coming due, opens, clicks
and unsubscribes, bounces and complaints, go through the service's own application into a real
store; the log is then projected in random batches, and every row must equal the message's
fold (what the trail of its stream says)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.notifications.adapters.intake_tables import PostgresIntakeTables
from services.notifications.adapters.messages_readmodel import SCHEMA, MessagesProjection, _trail
from services.notifications.application.intake import Intake
from services.notifications.application.tracking import ONE_CLICK
from services.notifications.domain import policy
from services.notifications.domain.bounces import Kind, Report
from services.notifications.domain.variant import EMAIL, SMS, Variant
from services.notifications.tests.pipeline_env import build
from services.notifications.tests.test_intake import FakeSuppressing
from services.notifications.tests.test_tracking import (
    HTML,
    SEEN,
    TOKENS,
    UNSUBSCRIBE,
    FakeLedger,
    tracking_of,
)
from shared.domain.errors import DomainError
from shared.testing.batches import batch_sizes, fresh_store, project_in_batches
from shared.testing.events import read_everything
from shared.testing.postgres import DatabaseFactory

REPORTS: dict[str, Kind] = {
    "hard_bounce": "hard_bounce",
    "soft_bounce": "soft_bounce",
    "complaint": "complaint",
}
OPS: tuple[str, ...] = ("email", "sms", "transactional", "tick", "tick", "later")
OPS = (*OPS, "open", "click", "unsubscribe", *REPORTS)
# One plan that surely produces every event type the read model folds (random plans may not).
EVERY_EVENT = [
    ("email", 0),  # ids[0]: a marketing email with a tracked link
    ("tick", 0),  # sent
    ("transactional", 0),  # ids[1]
    ("tick", 2),  # retry
    ("later", 0),
    ("tick", 0),  # sent
    ("transactional", 2),  # ids[2]
    ("tick", 3),  # rejected: failed for good
    ("open", 0),
    ("click", 0),
    ("unsubscribe", 0),
    ("complaint", 0),
    ("soft_bounce", 1),
    ("hard_bounce", 1),
    ("sms", 1),  # ids[3], deferred or queued by the hour in Paris
]
STATUSES = ("sent", "sent", "retry", "rejected")
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
plans = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 99)), min_size=4, max_size=24)


EVENT_TYPES = {"MessageDecided", "MessageDispatched", "MessageSent", "MessageFailed"}
EVENT_TYPES |= {"MessageOpened", "MessageClicked", "MessageUnsubscribed"}
EVENT_TYPES |= {"MessageBounced", "MessageComplained"}


@SETTINGS
@given(plan=plans, sizes=batch_sizes)
@example(plan=EVERY_EVENT, sizes=[1, 3])
async def test_message_rows_equal_the_fold_whatever_the_batches(
    databases: DatabaseFactory, plan: list[tuple[str, int]], sizes: list[int]
) -> None:
    async with fresh_store(databases) as store:
        pipe = build(store)
        pipe.contacts.add()
        track = tracking_of(pipe, FakeLedger(pipe))
        intake = Intake(
            store, PostgresIntakeTables(store, store.pool), FakeSuppressing(), pipe.clock
        )
        email = await pipe.templates.create(
            "news", EMAIL, "News", [Variant("", subject="Hi", text="Tea", html=HTML)]
        )
        sms = await pipe.template("sms", SMS)
        ids: list[str] = []
        for op, v in plan:
            if op in ("email", "sms", "transactional"):
                kind = policy.TRANSACTIONAL if op == "transactional" else policy.MARKETING
                template = sms if op == "sms" or v % 2 else email
                request_id = f"r{len(ids)}"
                ids.append((await pipe.send(template, kind, request_id=request_id)).message_id)
            elif op == "tick":
                pipe.delivery.status = STATUSES[v % len(STATUSES)]
                await pipe.dispatcher.tick()
            elif op == "later":  # time passes: quiet hours end, retries come due, caps roll over
                pipe.clock.advance(timedelta(hours=1 + v % 12))
            elif not ids:
                continue
            elif op == "open":
                await track.open(TOKENS.open_token(ids[v % len(ids)]))
            elif op == "click":
                await track.click(TOKENS.click_token(ids[v % len(ids)], 0))
            elif op == "unsubscribe":
                await track.unsubscribe_by(UNSUBSCRIBE.token(ids[v % len(ids)]), ONE_CLICK, SEEN)
            else:  # a report: refused (not dispatched yet, ...) or recorded
                with contextlib.suppress(DomainError):
                    await intake.reports([Report(ids[v % len(ids)], REPORTS[op])], "json")
        await project_in_batches(store, MessagesProjection(), sizes)
        rows = {
            str(r["message_id"]): _trail(r)
            for r in await store.pool.fetch(f"SELECT * FROM {SCHEMA}.messages")
        }
        assert sorted(rows) == sorted(ids)
        if plan == EVERY_EVENT:  # the example meant to produce every event type did
            log = await read_everything(store, categories=["message"])
            types = {e.type.rsplit(".", 1)[1] for e in log}
            assert types >= EVENT_TYPES, EVENT_TYPES - types
        for mid in ids:
            folded, row = await pipe.messages.get(mid), rows[mid]
            assert (row.status, row.channel, row.kind, row.contact_id, row.version) == (
                folded.status,
                folded.channel,
                folded.kind,
                folded.contact_id,
                folded.version,
            )
            assert orjson.dumps(row.decisions) == orjson.dumps(folded.decisions)
            assert [(t, data) for _, t, data in row.delivery] == [
                (t, data) for _, t, data in folded.delivery
            ]
