"""Verifying an export offline, without a database (docs/architecture.md §2a): the file's own
shape, every chain in it, and that it agrees with each signed checkpoint whose position it
covers (the heads it starts from plus its events up to that position give the signed root).

Memory: one head per stream (the heads as of a checkpoint are recomputed from them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from shared.eventstore.audit.chains import (
    EXPORT_FORMAT,
    MALFORMED,
    REORDERED,
    TRUNCATED,
    ChainChecker,
    Finding,
    Head,
    StoredEvent,
    tree_of,
)
from shared.eventstore.audit.checkpoints import Checkpoint, CheckpointFormatError
from shared.eventstore.audit.report import Report, compare_tree, trusted_checkpoints


def read_checkpoints(lines: Iterable[bytes | str]) -> list[Checkpoint]:
    """The checkpoints of a `crm audit checkpoint` file. Raises CheckpointFormatError (with the
    line number) for a line that is not one."""
    out: list[Checkpoint] = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            out.append(Checkpoint.from_json(orjson.loads(raw)))
        except (orjson.JSONDecodeError, CheckpointFormatError) as exc:
            raise CheckpointFormatError(f"line {n}: {exc}") from None
    return out


class _Export:
    """The state of one pass over an export file."""

    def __init__(self, report: Report, trusted: Sequence[Checkpoint]) -> None:
        self.report = report
        self.trusted = trusted
        self.checker = ChainChecker(report.findings)
        self.first = self.last = 0
        self.started = self.ended = False
        self.heads = 0
        self.last_position = -1
        self.last_head: str | None = None
        self.pending: list[Checkpoint] = []

    def found(self, kind: str, message: str, **where: Any) -> None:
        self.report.add(Finding(kind, message, **where))

    def line(self, n: int, body: Any) -> None:
        kind = body.get("kind") if isinstance(body, dict) else None
        if self.ended:
            self.found(MALFORMED, f"line {n}: more after the closing line")
        elif not self.started:
            self.header(n, body)
        elif kind == "head":
            self.head(n, Head.from_json(body))
        elif kind == "event":
            self.event(n, StoredEvent.from_json(body))
        elif kind == "end":
            self.end(n, body)
        else:
            self.found(MALFORMED, f"line {n}: unknown kind {kind!r}")

    def header(self, n: int, body: Any) -> None:
        if not isinstance(body, dict) or body.get("kind") != "export":
            raise ValueError(f"line {n} is not the header of a {EXPORT_FORMAT} export")
        if body.get("format") != EXPORT_FORMAT:
            raise ValueError(f"line {n}: format {body.get('format')!r}, not {EXPORT_FORMAT}")
        self.first, self.last = int(body["first"]), int(body["last"])
        self.started = True
        covered = [c for c in self.trusted if self.first - 1 <= c.position <= self.last]
        self.pending = sorted(covered, key=lambda c: c.position)
        if len(covered) < len(self.trusted):
            self.report.note(
                f"{len(self.trusted) - len(covered)} checkpoint(s) lie outside the export's "
                f"positions {self.first}..{self.last} and were not compared"
            )

    def head(self, n: int, head: Head) -> None:
        if self.checker.events:
            self.found(MALFORMED, f"line {n}: a head after the events", stream=head.stream)
        elif head.position >= self.first:
            self.found(MALFORMED, f"line {n}: a head inside the exported range", stream=head.stream)
        elif self.last_head is not None and head.stream <= self.last_head:
            self.found(MALFORMED, f"line {n}: heads out of order", stream=head.stream)
        else:
            self.last_head = head.stream
            self.heads += 1
            self.checker.seed(head)

    def event(self, n: int, e: StoredEvent) -> None:
        where = {"stream": e.stream, "version": e.version, "position": e.position}
        if not self.first <= e.position <= self.last:
            self.found(MALFORMED, f"line {n}: position outside the exported range", **where)
            return
        if e.position <= self.last_position:
            self.found(REORDERED, f"line {n}: the export is not in position order", **where)
        while self.pending and self.pending[0].position < e.position:
            self.compare(self.pending.pop(0))
        self.checker.feed(e)
        self.last_position = max(self.last_position, e.position)

    def end(self, n: int, body: dict[str, Any]) -> None:
        self.ended = True
        if body.get("events") != self.checker.events or body.get("heads") != self.heads:
            self.found(
                TRUNCATED,
                f"line {n}: the export says {body.get('heads')} heads and {body.get('events')} "
                f"events, the file holds {self.heads} and {self.checker.events}",
            )

    def compare(self, cp: Checkpoint) -> None:
        """The heads so far are the heads as of ``cp.position`` (no event after it yet)."""
        self.report.checkpoints += 1
        if cp.position >= self.first and self.last_position != cp.position:
            self.found(
                TRUNCATED,
                f"the export has no event at position {cp.position}, where checkpoint "
                f"{cp.number} was taken",
                position=cp.position,
                checkpoint=cp.number,
            )
        streams, root = tree_of(self.checker.heads)
        compare_tree(cp, streams, root, self.report)

    def finish(self) -> None:
        if not self.started:
            if not self.report.findings:
                self.found(MALFORMED, "the file is empty")
            return
        for cp in self.pending:
            self.compare(cp)
        if not self.ended:
            self.found(TRUNCATED, "the export has no closing line: the file was cut off")
        self.report.events = self.checker.events
        self.report.streams = len(self.checker.heads)


def verify_export(
    lines: Iterable[bytes | str],
    checkpoints: Sequence[Checkpoint] = (),
    *,
    pinned: Sequence[bytes] = (),
) -> Report:
    """Check an export (`crm events export`) line by line, and against ``checkpoints``."""
    report = Report()
    trusted = trusted_checkpoints(checkpoints, pinned, report) if checkpoints else []
    state = _Export(report, trusted)
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            state.line(n, orjson.loads(raw))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            report.add(Finding(MALFORMED, f"line {n}: {type(exc).__name__}: {exc}"[:300]))
            if not state.started:
                break
    state.finish()
    return report
