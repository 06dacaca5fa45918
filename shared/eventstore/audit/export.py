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

from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
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


CHUNK_BYTES = 256 * 1024  # what export_chunks yields at a time

# Characters JSON allows raw inside strings but many line readers (Python's str.splitlines
# among them) take for line breaks: written as escapes, which decode to the same text.
_BREAKS = [("\u0085", b"\\u0085"), ("\u2028", b"\\u2028"), ("\u2029", b"\\u2029")]


_BREAK_LEADS = (b"\xc2\x85", b"\xe2\x80")  # the UTF-8 of U+0085, and of U+2028/U+2029's lead


def _line(body: dict[str, Any]) -> bytes:
    raw = orjson.dumps(body)
    if _BREAK_LEADS[0] in raw or _BREAK_LEADS[1] in raw:
        for char, escaped in _BREAKS:
            raw = raw.replace(char.encode(), escaped)
    return raw + b"\n"


async def export_range(
    log: AuditLog, since: int | datetime | None, until: int | datetime | None
) -> tuple[int, int]:
    """The positions to export: ``since`` and ``until`` are each a global position or a time
    (the first position recorded at or after it, the last at or before it), or None (the
    start, the end). The end is at most the final position (later events could still be
    joined by ones committing below them)."""
    times = [b if isinstance(b, datetime) else None for b in (since, until)]
    first, last = await log.positions_between(times[0], times[1])
    if isinstance(since, int):
        first = since
    if isinstance(until, int):
        last = min(until, await log.final_position())
    return first, last


@dataclass(frozen=True, slots=True)
class ExportChunk:
    """The next bytes of an export (a chunk may end inside a line), and the progress so far."""

    data: bytes
    first: int
    last: int
    heads: int  # stream heads written so far
    events: int  # events written so far
    position: int  # the last of them's position (first - 1 before any)


async def export_chunks(
    log: AuditLog, first: int, last: int, size: int = CHUNK_BYTES
) -> AsyncGenerator[ExportChunk, None]:
    """The export of the events with ``first <= position <= last`` (``last`` at most the final
    position), in chunks of at most ``size`` bytes but the last; the last chunk ends with the
    closing line."""
    last = min(last, await log.final_position())
    buffer = bytearray(_line({"kind": "export", "format": FORMAT, "first": first, "last": last}))
    heads = events = 0
    position = first - 1

    def cut() -> Iterator[ExportChunk]:
        while len(buffer) >= size:
            data = bytes(buffer[:size])
            del buffer[:size]
            yield ExportChunk(data, first, last, heads, events, position)

    if first > 0:
        async for head in log.heads(min(first - 1, last)):
            buffer += _line(head.to_json())
            heads += 1
            if len(buffer) >= size:
                for chunk in cut():
                    yield chunk
    async for event in log.events(first, last):
        buffer += _line(event.to_json())
        events += 1
        position = event.position
        if len(buffer) >= size:
            for chunk in cut():
                yield chunk
    buffer += _line({"kind": "end", "heads": heads, "events": events})
    for chunk in cut():
        yield chunk
    yield ExportChunk(bytes(buffer), first, last, heads, events, position)


async def export(
    log: AuditLog,
    first: int,
    last: int,
    write: Callable[[bytes], object],
    progress: Callable[[ExportChunk], object] | None = None,
) -> ExportSummary:
    """Write the export of ``first <= position <= last`` (export_chunks); ``progress`` is told
    each chunk once written."""
    chunk = None
    async for chunk in export_chunks(log, first, last):
        write(chunk.data)
        if progress is not None:
            progress(chunk)
    assert chunk is not None  # the closing line, at least
    return ExportSummary(chunk.first, chunk.last, chunk.heads, chunk.events)
