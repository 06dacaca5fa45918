"""Exporting a range of the log as JSON lines (docs/architecture.md §2a), verifiable offline.

The file is, one JSON object a line:

1. ``{"kind": "export", "format": "crm-export/1", "first": F, "last": L}``: the events with
   ``F <= position <= L`` follow;
2. ``{"kind": "head", ...}`` for every stream that has events before ``F``: its head as of
   ``F - 1`` (by stream name), so that the chains of the range can be checked from where they
   continue, and the heads as of any checkpoint in the range recomputed;
3. ``{"kind": "event", ...}`` in position order (shared/eventstore/audit/chains.py:
   ``StoredEvent.to_json``; data and metadata as the stored JSON text the hash covers);
4. ``{"kind": "end", "heads": H, "events": N}``, so a cut-off file is noticed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from shared.eventstore.audit.chains import EXPORT_FORMAT as FORMAT
from shared.eventstore.audit.port import AuditLog


@dataclass(frozen=True, slots=True)
class ExportSummary:
    first: int
    last: int
    heads: int
    events: int

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last, "heads": self.heads, "events": self.events}


# Characters JSON allows raw inside strings but many line readers (Python's str.splitlines
# among them) take for line breaks: written as escapes, which decode to the same text.
_BREAKS = [("\u0085", b"\\u0085"), ("\u2028", b"\\u2028"), ("\u2029", b"\\u2029")]


def _line(body: dict[str, Any]) -> bytes:
    raw = orjson.dumps(body)
    for char, escaped in _BREAKS:
        raw = raw.replace(char.encode(), escaped)
    return raw + b"\n"


async def export(
    log: AuditLog,
    first: int,
    last: int,
    write: Callable[[bytes], object],
    progress: Callable[[int], object] | None = None,
) -> ExportSummary:
    """Write the events with ``first <= position <= last`` (``last`` at most the final position:
    later events could still be joined by ones committing below them); ``progress`` is told
    each event's position."""
    last = min(last, await log.final_position())
    write(_line({"kind": "export", "format": FORMAT, "first": first, "last": last}))
    heads = events = 0
    if first > 0:
        async for head in log.heads(min(first - 1, last)):
            write(_line(head.to_json()))
            heads += 1
    async for event in log.events(first, last):
        write(_line(event.to_json()))
        events += 1
        if progress is not None:
            progress(event.position)
    write(_line({"kind": "end", "heads": heads, "events": events}))
    return ExportSummary(first, last, heads, events)
