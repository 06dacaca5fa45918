"""One contact's facts as they stood at a past instant, for explanations as of that instant.

The facts tables hold only the present. The past is in the log: the contact's events, those of
the contacts merged into it (its ContactAbsorbed events name them, and so on down), its consent
ledger and its orders and carts (the facts tables know every order and cart that ever came from
these contacts). Their events recorded up to the instant are written by the engine's own
facts writer into temporary copies of the facts tables, in a transaction that is rolled back:
the same code that builds the live facts builds the past ones, personal facts included
(contacts' BatchGetContactVersions as of each event's stream version).

Not rebuilt: RFM scores (they rank the whole customer base; the re-score in force then is not
kept), so RFM fields read as unset in a past explanation. Memberships at the instant come from
the membership spans (the caller passes them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import asyncpg

from services.segmentation.adapters.facts_tables import FACTS_DDL, load_facts
from services.segmentation.adapters.facts_writer import HANDLED, FactsWriter
from services.segmentation.application.ports import ContactVersions
from services.segmentation.domain.facts import Facts
from shared.events.upcast import upcast_all
from shared.eventstore import EventStore, RecordedEvent

ABSORBED = "crm.contacts.v1.ContactAbsorbed"
MAX_FAMILY = 1000  # contacts merged into one, transitively (a guard, not a limit in practice)
_HANDLED = frozenset(HANDLED)


class FactsHistory:
    def __init__(
        self, pool: asyncpg.Pool, store: EventStore, contacts: ContactVersions, schema: str
    ) -> None:
        self.pool, self.store, self.writer, self.schema = pool, store, FactsWriter(contacts), schema

    async def of(self, contact_id: str, at: datetime, segments: Iterable[str]) -> Facts | None:
        """The facts of ``contact_id`` from the events recorded up to ``at``, as a member of
        ``segments``; None if it did not exist yet."""
        family = await self._family(contact_id, at)
        streams = [f"{kind}-{c}" for c in family for kind in ("contact", "consent")]
        streams += await self._orders_and_carts(family)
        found = await self.store.read_streams(streams)
        events = sorted(
            (e for stream in found.values() for e in stream if _before(e, at)),
            key=lambda e: e.position,
        )
        async with self.pool.acquire() as conn:
            scratch = conn.transaction()
            await scratch.start()
            try:
                await conn.execute("SET LOCAL search_path TO pg_temp")
                await conn.execute(FACTS_DDL)
                await self.writer.apply(conn, upcast_all(events))
                facts = (await load_facts(conn, [contact_id])).get(contact_id)
            finally:
                await scratch.rollback()  # the temporary tables go with it
        return None if facts is None else facts.in_segments(frozenset(segments))

    async def _family(self, contact_id: str, at: datetime) -> list[str]:
        """The contact and every contact merged into it (transitively) up to ``at``."""
        family, todo = [contact_id], [contact_id]
        while todo and len(family) < MAX_FAMILY:
            found = await self.store.read_streams([f"contact-{c}" for c in todo])
            todo = [
                e.data["merged_id"]
                for events in found.values()
                for e in events
                if e.type == ABSORBED and _before(e, at) and e.data["merged_id"] not in family
            ]
            family += todo
        return family

    async def _orders_and_carts(self, family: list[str]) -> list[str]:
        ids = [uuid.UUID(c) for c in family]
        try:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    f"""SELECT 'order-' || order_id FROM "{self.schema}".orders
                        WHERE origin_contact_id = ANY($1::uuid[])
                        UNION ALL
                        SELECT 'cart-' || cart_id FROM "{self.schema}".carts
                        WHERE origin_contact_id = ANY($1::uuid[])""",
                    ids,
                )
        except asyncpg.UndefinedTableError:  # the engine never ran: no orders known
            return []
        return [r[0] for r in rows]


def _before(e: RecordedEvent, at: datetime) -> bool:
    """A fact-changing event recorded up to ``at``."""
    return e.type in _HANDLED and e.recorded_at <= at
