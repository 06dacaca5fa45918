"""Contacts as they are now, the way GetContact answers: from the read model, from the stream
when the read model has not caught up with a contact yet (a client reads what it just wrote),
and a merged contact's lookup leading to the contact it was merged into.

``current_many`` answers many ids with one read model query, one more per merge hop to
survivors not asked for themselves (usually none or one), and one stream read per contact the
read model lags.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.contacts.application.commands import ContactCommands
from services.contacts.application.queries import ContactQueries
from services.contacts.domain.contact import Contact

MAX_HOPS = 8  # merges can chain; 8 hops is far beyond any real chain


async def _read(
    queries: ContactQueries, commands: ContactCommands, contact_ids: Sequence[str]
) -> dict[str, Contact]:
    """The contacts that exist, by id: the read model first, the stream for the others."""
    found = await queries.get_many(list(contact_ids))
    for cid in contact_ids:
        if cid not in found and (loaded := await commands.load(cid)) is not None:
            found[cid] = loaded
    return found


async def survivor(queries: ContactQueries, commands: ContactCommands, contact: Contact) -> Contact:
    """A merged contact's lookups lead to the contact it was merged into."""
    found = {contact.contact_id: contact}
    return (await _survivors(queries, commands, found, dict(found)))[contact.contact_id]


async def _survivors(
    queries: ContactQueries,
    commands: ContactCommands,
    contacts: dict[str, Contact],
    known: dict[str, Contact],
) -> dict[str, Contact]:
    """Each contact replaced by the end of its merge chain (at most MAX_HOPS hops; a chain
    leading to a contact that cannot be read stops at the last one that can). ``known``: the
    contacts read already in this call, by id; only the others are read, hop by hop."""
    out = dict(contacts)
    moving = {key for key, c in out.items() if c.merged_into}
    for _ in range(MAX_HOPS):
        if not moving:
            break
        targets = list(dict.fromkeys(out[key].merged_into for key in moving))
        if unread := [t for t in targets if t not in known]:
            known.update(await _read(queries, commands, unread))
        for key in list(moving):
            after = known.get(out[key].merged_into)
            if after is None:
                moving.discard(key)
                continue
            out[key] = after
            if not after.merged_into:
                moving.discard(key)
    return out


async def current_many(
    queries: ContactQueries, commands: ContactCommands, contact_ids: Sequence[str]
) -> dict[str, Contact]:
    """For each requested id that exists, what GetContact answers for it (the survivor for a
    merged one), keyed by the requested id. Unknown ids are left out."""
    found = await _read(queries, commands, contact_ids)
    return await _survivors(queries, commands, found, dict(found))
