"""Reactors: events in, events out (docs/architecture.md, "Reactors").

A reaction answers each event it subscribes to, usually with a command of its own service. The
projection runner drives it like a read model (one leader across replicas, a checkpoint moved
with each batch, parking, supervision), through ``Reactor``, which adds what every reaction
needs and none should write itself:

- nothing happens in replay (a rebuild, a definition change): its effects happened already;
- each answer carries the upstream event as its cause: ``causation_id`` = the upstream event
  id, the upstream ``correlation_id`` (or the upstream event id where it had none), and a
  request id derived from the reactor's name and the upstream event id, so the command's event
  ids derive from it and a re-run (a retried batch, a restart, another replica) writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from shared.eventstore import RecordedEvent
from shared.projections.model import ApplyContext


@dataclass(frozen=True)
class Cause:
    """The upstream event a reaction answers, and what the answer's events carry."""

    event: RecordedEvent
    reactor: str

    @property
    def request_id(self) -> str:
        """The request id of the reaction's command: the same on every re-run."""
        return f"{self.reactor}:{self.event.event_id}"

    @property
    def correlation_id(self) -> str:
        return str(self.event.metadata.get("correlation_id") or self.event.event_id)

    def meta(self) -> dict[str, Any]:
        """The metadata of the events the reaction appends."""
        return {
            "schema": 1,
            "actor": self.reactor,
            "request_id": self.request_id,
            "causation_id": str(self.event.event_id),
            "correlation_id": self.correlation_id,
        }


class Reaction(Protocol):
    name: str  # stable: the checkpoint and the leader lock are keyed by it
    categories: Sequence[str] | None
    types: Sequence[str] | None
    # Tables of its own (unqualified names, in the reactor's schema), e.g. what it did for
    # operators; "" for none.
    ddl: str

    async def react(self, conn: asyncpg.Connection, cause: Cause) -> None:
        """Answer one event; ``conn`` is in the batch's transaction (with the checkpoint)."""
        ...


class Reactor:
    """A reaction as the projection runner drives it."""

    def __init__(self, reaction: Reaction) -> None:
        self.reaction = reaction
        self.name = reaction.name
        self.schema = re.sub(r"[^a-z0-9_]", "_", reaction.name.lower())
        self.ddl = reaction.ddl or "SELECT 1"
        self.categories = reaction.categories
        self.types = reaction.types

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], ctx: ApplyContext
    ) -> None:
        if ctx.replay:
            return
        for event in events:
            await self.reaction.react(conn, Cause(event, self.name))
