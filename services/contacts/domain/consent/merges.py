"""A survivor's consent after merges: its own ledger combined with those merged into it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from services.contacts.domain.consent.events import NEVER, SUBSCRIBED, UNSUBSCRIBED
from services.contacts.domain.consent.ledger import ChannelConsent

_RESTRICTIVENESS = {SUBSCRIBED: 0, NEVER: 1, UNSUBSCRIBED: 2}


def with_merged(
    own: Mapping[str, ChannelConsent], merged: Iterable[Mapping[str, ChannelConsent]]
) -> dict[str, ChannelConsent]:
    """A survivor's consent, given the ledgers of the contacts merged into it. Per channel the
    more restrictive statement wins, unless the survivor's own statement is the more recent one
    (its own evidence says otherwise); a suppression of any of them applies. Ledgers are never
    rewritten by a merge, so consent cannot leak between people and an unmerge undoes this."""
    out = dict(own)
    for ledger in merged:
        for name, theirs in ledger.items():
            mine = out.get(name) or ChannelConsent(name)
            stricter = _RESTRICTIVENESS[theirs.state] > _RESTRICTIVENESS[mine.state]
            mine_newer = (
                mine.state != NEVER
                and mine.changed_at is not None
                and (theirs.changed_at is None or mine.changed_at > theirs.changed_at)
            )
            if stricter and not mine_newer:
                mine = replace(
                    mine, state=theirs.state, terms=theirs.terms, changed_at=theirs.changed_at
                )
            if theirs.suppression is not None and mine.suppression is None:
                mine = replace(mine, suppression=theirs.suppression)
            out[name] = mine
    return out
