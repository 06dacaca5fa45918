"""The messages read model does not depend on batch boundaries: random sequences of sends
(marketing and transactional, email and SMS: sent, skipped, deferred into quiet hours), the
dispatcher's outcomes (sent, retried, rejected), deferred decisions coming due, go through the
service's own application into a real store; the log is then projected in random batches, and
every row must equal the message's fold (what the trail of its stream says)."""

from __future__ import annotations

from datetime import timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.notifications.adapters.messages_readmodel import SCHEMA, MessagesProjection, _trail
from services.notifications.domain import policy
from services.notifications.domain.variant import SMS
from services.notifications.tests.pipeline_env import build
from shared.testing.batches import batch_sizes, fresh_store, project_in_batches
from shared.testing.postgres import DatabaseFactory

OPS = ("email", "sms", "transactional", "tick", "tick", "later")
STATUSES = ("sent", "sent", "retry", "rejected")
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
plans = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 99)), min_size=4, max_size=24)


@SETTINGS
@given(plan=plans, sizes=batch_sizes)
async def test_message_rows_equal_the_fold_whatever_the_batches(
    databases: DatabaseFactory, plan: list[tuple[str, int]], sizes: list[int]
) -> None:
    async with fresh_store(databases) as store:
        pipe = build(store)
        pipe.contacts.add()
        email, sms = await pipe.template(), await pipe.template("sms", SMS)
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
            else:  # time passes: quiet hours end, retries come due, caps roll over
                pipe.clock.advance(timedelta(hours=1 + v % 12))
        await project_in_batches(store, MessagesProjection(), sizes)
        rows = {
            str(r["message_id"]): _trail(r)
            for r in await store.pool.fetch(f"SELECT * FROM {SCHEMA}.messages")
        }
        assert sorted(rows) == sorted(ids)
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
