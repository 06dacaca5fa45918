"""Unique keys for aggregates (a template's, a segment's, a flow's key): a key is claimed by
the first and only event of a stream of its own, appended in the same atomic write as the
aggregate's creation, so two aggregates never hold one key; and the key stream names its
holder, so an aggregate is found by key from the log (no read-model lag)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.application.commands import new_events
from shared.domain.errors import Conflict, NotFound
from shared.eventstore import EventStore, StreamAppend, StreamState


@dataclass(frozen=True)
class UniqueKey:
    namespace: uuid.UUID  # the aggregate's: the claim's event id derives from the request
    stream_of: Callable[[str], str]  # key -> its stream ("templatekey-<key>")
    claimed: str  # the claim's event type
    id_field: str  # "template_id"
    kind: str  # "template": in reasons (TEMPLATE_KEY_TAKEN, TEMPLATE_NOT_FOUND) and messages

    async def claim(
        self,
        store: EventStore,
        key: str,
        holder: str,
        request_id: str,
        meta: Mapping[str, Any],
    ) -> StreamAppend:
        """The claim to append with the creation (it expects no stream: a racing claim loses);
        Conflict <KIND>_KEY_TAKEN when another aggregate holds the key already."""
        stream = self.stream_of(key)
        head = await store.read_heads([stream])
        if stream in head and head[stream].data.get(self.id_field) != holder:
            raise Conflict(
                f"{self.kind.upper()}_KEY_TAKEN",
                f"the key {key!r} belongs to another {self.kind}",
                **{self.id_field: str(head[stream].data.get(self.id_field, ""))},
            )
        claim = [(self.claimed, {self.id_field: holder, "key": key})]
        events = new_events(self.namespace, stream, claim, request_id, meta)
        return StreamAppend(stream, events, StreamState.NO_STREAM)

    async def holder(self, store: EventStore, key: str) -> str:
        """The id of the aggregate holding ``key``; NotFound <KIND>_NOT_FOUND when none does."""
        stream = self.stream_of(key)
        head = (await store.read_heads([stream])).get(stream) if key else None
        if head is None:
            raise NotFound(
                f"{self.kind.upper()}_NOT_FOUND", f"no {self.kind} with key {key!r}", key=key
            )
        return str(head.data[self.id_field])
