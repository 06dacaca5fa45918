"""Reading the whole log in tests: page until the head, as any reader must."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.eventstore import RecordedEvent


async def read_everything(store: Any, **filters: Any) -> list[RecordedEvent]:
    """Every event committed so far (matching ``filters``), in position order. A single
    read_all may stop short while an older transaction is still open."""
    head, after, out = await store.head_position(), 0, []
    while after < head:
        page = await store.read_all(after, limit=1000, **filters)
        out.extend(page.events)
        if page.last_position == after:
            await asyncio.sleep(0.005)
        after = page.last_position
    return out
