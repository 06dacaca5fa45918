"""What the flow engine reads about flows, runs and zones, once per batch of events rather than
once per event: most upstream events (a consent recorded, a contact updated) start nothing and
find nobody waiting, and learn it from what the batch read at its start.

- ``Definitions``: flow versions parsed once (a version never changes).
- ``BatchView``: the flows' states (read again after a flow event of the batch), the open runs
  of the batch's contacts (one query; a contact's read again after a run of theirs was
  written) and their time zones (one query; kept as the batch sets them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import orjson

from services.notifications.adapters import flow_run_tables as t
from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows import run as runs
from shared.eventstore import RecordedEvent


class Definitions:
    """Flow versions read from the engine's tables, parsed once (a version never changes)."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, int], fd.Flow] = {}

    async def get(self, conn: asyncpg.Connection, flow_id: str, version: int) -> fd.Flow:
        key = (flow_id, version)
        if key not in self._parsed:
            raw = await conn.fetchval(
                """SELECT definition FROM flow_versions
                    WHERE flow_id = $1::uuid AND version = $2""",
                flow_id,
                version,
            )
            self._parsed[key] = fd.read(orjson.loads(raw))[0]
        return self._parsed[key]

    async def states(self, conn: asyncpg.Connection) -> dict[str, tuple[str, int]]:
        """Every flow's state and latest version."""
        rows = await conn.fetch("SELECT flow_id::text, state, latest_version FROM flows")
        return {r[0]: (r[1], r[2]) for r in rows}


class BatchView:
    def __init__(
        self,
        conn: asyncpg.Connection,
        definitions: Definitions,
        events: Sequence[RecordedEvent],
    ) -> None:
        self.conn, self.definitions = conn, definitions
        self.contacts = list(dict.fromkeys(_contact(e) for e in events if _contact(e)))
        self._states: dict[str, tuple[str, int]] | None = None
        self._runs: dict[str, list[t.RunRow]] | None = None
        self._stale: set[str] = set()
        self._zones: dict[str, str] | None = None

    async def states(self) -> dict[str, tuple[str, int]]:
        if self._states is None:
            self._states = await self.definitions.states(self.conn)
        return self._states

    def flows_changed(self) -> None:
        self._states = None

    async def open_runs(self, contact_id: str) -> list[t.RunRow]:
        if self._runs is None:
            self._runs = await _open_runs(self.conn, self.contacts)
        if contact_id in self._stale or contact_id not in self._runs:
            self._runs[contact_id] = await t.open_runs(self.conn, contact_id)
            self._stale.discard(contact_id)
        return self._runs.get(contact_id, [])

    def runs_changed(self, contact_id: str) -> None:
        self._stale.add(contact_id)

    async def zone(self, contact_id: str) -> str:
        if self._zones is None:
            self._zones = await _zones(self.conn, self.contacts)
        if contact_id not in self._zones:
            self._zones[contact_id] = await t.zone_of(self.conn, contact_id)
        return self._zones[contact_id]

    def zone_set(self, contact_id: str, time_zone: str) -> None:
        if self._zones is not None:
            self._zones[contact_id] = time_zone


def _contact(e: RecordedEvent) -> str:
    """The event's contact id when it names one (as a UUID); others are read one by one."""
    value = str(e.data.get("contact_id", "")) if isinstance(e.data, dict) else ""
    try:
        return str(uuid.UUID(value)) if value else ""
    except ValueError:
        return ""


async def _open_runs(conn: asyncpg.Connection, contacts: list[str]) -> dict[str, list[t.RunRow]]:
    rows = await conn.fetch(
        """SELECT * FROM runs WHERE contact_id = ANY($1::uuid[]) AND status <> $2
           ORDER BY start_time""",
        [uuid.UUID(c) for c in contacts],
        runs.DONE,
    )
    out: dict[str, list[t.RunRow]] = {c: [] for c in contacts}
    for r in rows:
        out[str(r["contact_id"])].append(t.run_of(r))
    return out


async def _zones(conn: asyncpg.Connection, contacts: list[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT contact_id, time_zone FROM zones WHERE contact_id = ANY($1::uuid[])",
        [uuid.UUID(c) for c in contacts],
    )
    found = {str(r[0]): str(r[1] or "") for r in rows}
    return {c: found.get(c, "") for c in contacts}
