"""The consent read model does not depend on batch boundaries: random consent commands through
the service's ConsentLedgers (grant, withdraw, double opt-in request and confirmation,
suppress, unsuppress), projected in random batches, give every channel row the domain's fold of
the ledger and the as-of read (GetConsent as_of = now)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contacts.adapters.consent_readmodel import ConsentProjection, ConsentReadModel
from services.contacts.adapters.keys import DataKeys
from services.contacts.application.commands import ContactCommands
from services.contacts.application.consent import ConsentLedgers
from services.contacts.domain import consent as c
from services.contacts.domain.contact import ProfileInput
from shared.domain.errors import DomainError
from shared.testing.batches import batch_sizes, fresh_store, project_in_batches
from shared.testing.postgres import DatabaseFactory

CONTACTS = 2
OPS = ("subscribe", "opt_in", "confirm", "withdraw", "suppress", "unsuppress")
steps = st.lists(
    st.tuples(
        st.sampled_from(OPS),
        st.integers(0, CONTACTS - 1),
        st.sampled_from(c.CHANNELS[:2]),
        st.integers(0, 9),
    ),
    min_size=8,
    max_size=40,
)


async def run_steps(ledgers: ConsentLedgers, ids: list[str], plan: Sequence[tuple]) -> None:
    """Execute the plan; what the domain refuses is skipped. ``confirm`` uses one of the tokens
    handed out so far (perhaps superseded or used: then it is refused)."""
    tokens: list[str] = []
    for op, i, channel, v in plan:
        cid = ids[i]
        terms = c.Terms("consent", f"form-{v % 2}", f"v{v % 3}")
        with contextlib.suppress(DomainError):
            if op in ("subscribe", "opt_in", "withdraw"):
                state = c.UNSUBSCRIBED if op == "withdraw" else c.SUBSCRIBED
                cmd = c.RecordConsent(channel, state, terms, double_opt_in=op == "opt_in")
                r = await ledgers.record(cid, cmd)
                tokens += [r.token] if r.token else []
            elif op == "confirm" and tokens:
                await ledgers.confirm(tokens[v % len(tokens)], c.Evidence())
            elif op == "suppress":
                await ledgers.suppress(cid, c.Suppress(channel, c.REASONS[v % 3], f"n{v}"))
            elif op == "unsuppress":
                await ledgers.unsuppress(cid, c.Unsuppress(channel))


def without_tokens(channels: Mapping[str, c.ChannelConsent]) -> dict[str, c.ChannelConsent]:
    """The read model leaves the token hash out (queries never need it)."""
    return {
        name: replace(ch, pending=replace(ch.pending, token_sha256="")) if ch.pending else ch
        for name, ch in channels.items()
    }


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=steps, sizes=batch_sizes)
async def test_consent_rows_equal_the_fold_whatever_the_batches(
    databases: DatabaseFactory, plan: list[tuple], sizes: list[int]
) -> None:
    async with fresh_store(databases) as store:
        contacts = ContactCommands(store, DataKeys(store.pool))
        ids = [
            (await contacts.register(ProfileInput(email=f"c{n}@shop.io"))).contact_id
            for n in range(CONTACTS)
        ]
        ledgers = ConsentLedgers(store, store.pool)
        await run_steps(ledgers, ids, plan)
        await project_in_batches(store, ConsentProjection(), sizes)
        read_model, now = ConsentReadModel(store.pool), datetime.now(UTC)
        for cid in ids:
            events = await store.read_stream(c.stream_of(cid))
            folded = c.fold(cid, ((e.type, e.data, e.recorded_at, e.version) for e in events))
            rows = await read_model.get(cid)
            assert rows == without_tokens(folded.channels), cid
            assert rows == without_tokens(await ledgers.as_of(cid, now)), cid
            at = {e.version: e.recorded_at for e in events}
            columns = await store.pool.fetch(
                """SELECT channel, state, pending_expires_at, suppressed, suppression_reason,
                          version, updated_at FROM consent_rm.channels WHERE contact_id = $1""",
                cid,
            )
            for r in columns:
                ch = folded.channels[r["channel"]]
                assert tuple(r)[1:] == (
                    ch.state,
                    ch.pending.expires_at if ch.pending else None,
                    ch.suppression is not None,
                    ch.suppression.reason if ch.suppression else "",
                    ch.version,
                    at[ch.version],
                ), (cid, r["channel"])
