"""Consent as it stands now, for one contact or many: what GetConsent (without as_of_time) and
BatchGetConsents answer.

Each contact's channels come from the read model, or from its consent stream when the stream
is ahead of the read model (a client reads what it just wrote); the ledgers of contacts merged
into it (and not unmerged) are folded in (domain ``with_merged``). For any number of contacts
that is four reads: the read model rows, the consent streams' heads, the contact streams (which
say who exists and who absorbed whom), and, only when some read model lags or some contact
absorbed others, those consent streams.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.contacts.adapters.consent_readmodel import ConsentReadModel
from services.contacts.domain import consent as domain
from services.contacts.domain.consent import ChannelConsent, Ledger
from shared.eventstore import EventStore, RecordedEvent

Channels = dict[str, ChannelConsent]


def fold_ledger(contact_id: str, events: Sequence[RecordedEvent]) -> Ledger:
    """The contact's ledger from its consent stream's events."""
    return domain.fold(contact_id, ((e.type, e.data, e.recorded_at, e.version) for e in events))


def contact_stream(contact_id: str) -> str:
    return f"contact-{contact_id}"


async def consent_now(
    store: EventStore, read_model: ConsentReadModel, contact_ids: Sequence[str]
) -> dict[str, Channels]:
    """Every channel now of each contact that exists, by id (normalised ids; unknown ones are
    left out). Channels a contact never used are absent, as in the read model."""
    ids = list(dict.fromkeys(contact_ids))
    rows = await read_model.get_many(ids)  # read before the heads: a head is never behind it
    heads = await store.read_heads([domain.stream_of(c) for c in ids])
    profiles = await store.read_streams([contact_stream(c) for c in ids])

    def head(cid: str) -> int:
        last = heads.get(domain.stream_of(cid))
        return -1 if last is None else last.version

    lagging = [
        c for c in ids if head(c) > max((ch.version for ch in rows.get(c, {}).values()), default=-1)
    ]
    absorbed = {
        c: domain.absorbed((e.type, e.data) for e in profiles.get(contact_stream(c), []))
        for c in ids
    }
    wanted = list(dict.fromkeys([*lagging, *(m for ms in absorbed.values() for m in ms)]))
    ledgers = await store.read_streams([domain.stream_of(c) for c in wanted]) if wanted else {}

    def folded(cid: str) -> Channels:
        return dict(fold_ledger(cid, ledgers.get(domain.stream_of(cid), [])).channels)

    out: dict[str, Channels] = {}
    for c in ids:
        if head(c) < 0 and not profiles.get(contact_stream(c)):
            continue  # no consent and no contact: unknown
        own = folded(c) if c in lagging else rows.get(c, {})
        merged = absorbed[c]
        out[c] = domain.with_merged(own, [folded(m) for m in merged]) if merged else own
    return out
