"""The batch reads stay batched: however many ids, a fixed number of reads, plus one stream read
per contact the contacts read model lags. Counted on the real PostgreSQL store and read models,
by a wrapper that passes every call through."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from services.contacts.adapters.consent_readmodel import ConsentReadModel
from services.contacts.app import ContactsApi
from services.contacts.application.consent_now import consent_now
from services.contacts.application.current_contacts import current_many
from services.contacts.tests.conftest import World
from services.contacts.tests.test_batch_reads import a_mix, first_occurrences


class Counted:
    """``inner`` with a count of the calls made to each of its methods."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, Counter[str]()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kw: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kw)

        return counted


async def test_consents_of_many_contacts_take_four_reads(world: World) -> None:
    plain_ones = [await world.register(email=f"p{i}@example.com") for i in range(20)]
    ids = first_occurrences(await a_mix(world))
    store, rows = Counted(world.store), Counted(ConsentReadModel(world.store.pool))
    # the mix has read models that lag and contacts that absorbed others: four reads
    found = await consent_now(cast(Any, store), cast(Any, rows), ids + plain_ones)
    assert len(found) == len(ids) + len(plain_ones) - 1  # all but the unknown one
    assert rows.calls == {"get_many": 1}
    assert store.calls == {"read_heads": 1, "read_streams": 2}
    # contacts whose read model is current and who absorbed nobody: three
    store, rows = Counted(world.store), Counted(ConsentReadModel(world.store.pool))
    await consent_now(cast(Any, store), cast(Any, rows), plain_ones)
    assert (rows.calls, store.calls) == ({"get_many": 1}, {"read_heads": 1, "read_streams": 1})


async def test_contacts_take_one_query_per_merge_hop_and_a_load_per_lagging_one(
    world: World,
) -> None:
    ids = first_occurrences(await a_mix(world))  # project() ran before the last three were made
    servicer = cast(ContactsApi, world.served.api).contacts
    queries, commands = Counted(servicer.queries), Counted(servicer.commands)
    found = await current_many(cast(Any, queries), cast(Any, commands), ids)
    assert len(found) == len(ids) - 1  # all but the unknown one
    # every survivor was asked for too, so read already: one query, and a stream read for each
    # contact the read model lags (the fresh one, late, other) and for the unknown id
    assert (queries.calls, commands.calls) == ({"get_many": 1}, {"load": 4})
    merged, survivor = ids[1], ids[2]
    queries, commands = Counted(servicer.queries), Counted(servicer.commands)
    found = await current_many(cast(Any, queries), cast(Any, commands), [merged])
    assert found[merged].contact_id == survivor
    assert (queries.calls, commands.calls) == ({"get_many": 2}, {})  # the id, then its survivor
