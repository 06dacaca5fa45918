"""Verifying the live log (docs/architecture.md §2a): every hash chain, and, against signed
checkpoints, that the log still holds exactly what each one committed to.

The chains catch an event whose content was edited (and a deleted event in the middle of a
stream, and versions whose positions were swapped). What they cannot catch — a stream deleted
whole, a tail cut off, a stream rewritten with its chain recomputed, history re-ordered across
streams — changes the stream heads as of some checkpoint's position, so the Merkle root
recomputed from the log no longer matches the signed one.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.eventstore.audit.chains import (
    TRUNCATED,
    ChainChecker,
    Finding,
    tree_of_heads,
)
from shared.eventstore.audit.checkpoints import Checkpoint
from shared.eventstore.audit.port import AuditLog
from shared.eventstore.audit.report import Report, compare_tree, trusted_checkpoints


async def tree_as_of(log: AuditLog, position: int) -> tuple[int, bytes]:
    """(streams, Merkle root) of the stream heads as of ``position``, streamed from the log."""
    return await tree_of_heads(log.heads(position))


async def check_chains(log: AuditLog, report: Report, stream: str | None = None) -> None:
    """Every stream's chain, one stream at a time (memory: one stream's head)."""
    checker = ChainChecker(report.findings)
    current: str | None = None
    async for event in log.chains(stream):
        if event.stream != current:
            if current is not None:
                checker.forget(current)
            current = event.stream
        checker.feed(event)
    report.events += checker.events
    report.streams += checker.streams


async def check_checkpoint(log: AuditLog, cp: Checkpoint, final: int, report: Report) -> None:
    """Does the log as of ``cp.position`` still give the signed stream count and root?"""

    def found(kind: str, message: str) -> None:
        report.add(Finding(kind, message, position=cp.position, checkpoint=cp.number))

    report.checkpoints += 1
    if cp.position > final:
        found(
            TRUNCATED,
            f"the log ends at position {final}, before checkpoint {cp.number}'s position "
            f"{cp.position}: its tail was removed",
        )
    elif await log.event_at(cp.position) is None:
        found(
            TRUNCATED,
            f"the event at position {cp.position}, where checkpoint {cp.number} was taken, is gone",
        )
    streams, root = await tree_as_of(log, cp.position)
    compare_tree(cp, streams, root, report)


async def verify_log(
    log: AuditLog,
    checkpoints: Sequence[Checkpoint] = (),
    *,
    pinned: Sequence[bytes] = (),
    stream: str | None = None,
) -> Report:
    """The chains (of one ``stream``, or all), then each checkpoint whose signature a trusted
    key verifies."""
    report = Report()
    trusted = trusted_checkpoints(checkpoints, pinned, report) if checkpoints else []
    await check_chains(log, report, stream)
    if trusted:
        final = await log.final_position()
        for cp in trusted:
            await check_checkpoint(log, cp, final, report)
    return report
