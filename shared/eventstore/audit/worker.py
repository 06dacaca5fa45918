"""The checkpoint writer (docs/architecture.md §2a): every ``CHECKPOINT_INTERVAL_SECONDS``, a
signed checkpoint of the log, when the log moved since the last one.

It runs in a project role whose environment holds ``CHECKPOINT_SIGNING_KEY`` (shared/runtime.py
starts it there, supervised); the deploy files give the key to contacts-project only. Any number
of replicas is safe: like a projection runner, the writer leads through a session advisory lock
and the others stand by, and each write is serialised by the store besides (so `crm audit
checkpoint --create` never races it into two checkpoints with one number).

A log that ends before the last checkpoint's position (its tail removed) is an error the
writer raises, again after every restart: the role turns NOT_SERVING and ``worker.failed``
says why, until someone looks.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import structlog

from shared.eventstore.audit.checkpoints import Checkpoint, SigningKey
from shared.eventstore.audit.port import AuditLog, LogBehindCheckpoint
from shared.leadership import led
from shared.metrics import CHECKPOINT_POSITION, CHECKPOINT_TIME, CHECKPOINTS_WRITTEN

log = structlog.get_logger(__name__)
NAME = "audit-checkpoints"


def _seen(checkpoint: Checkpoint) -> None:
    CHECKPOINT_POSITION.set(checkpoint.position)
    CHECKPOINT_TIME.set(checkpoint.at.timestamp())


def written(checkpoint: Checkpoint, **context: str) -> None:
    """Count and log a checkpoint just written (by the writer, or on demand: ``context`` says
    who asked)."""
    CHECKPOINTS_WRITTEN.inc()
    _seen(checkpoint)
    log.info(
        "checkpoint.written",
        number=checkpoint.number,
        position=checkpoint.position,
        streams=checkpoint.streams,
        root=checkpoint.root.hex(),
        key_id=checkpoint.key_id,
        **context,
    )


class CheckpointWriter:
    def __init__(
        self,
        audit: AuditLog,
        key: SigningKey,
        dsn: str,
        *,
        every: float,
        standby_poll: float = 1.0,
    ) -> None:
        self.audit, self.key, self.dsn = audit, key, dsn
        self.every, self.standby_poll = every, standby_poll
        self.active = False  # holds the leader lock

    async def tick(self) -> Checkpoint | None:
        """Write a checkpoint now if the log moved since the last one."""
        checkpoint = await self.audit.create_checkpoint(self.key)
        if checkpoint is not None:
            written(checkpoint)
        return checkpoint

    async def _first_wait(self) -> float:
        """Seconds until the next checkpoint is due, counted from the last one's time. Raises
        LogBehindCheckpoint at once (so after every restart) when the log lost its tail."""
        latest = await self.audit.latest_checkpoint()
        if latest is None:
            return 0.0
        _seen(latest)
        final = await self.audit.final_position()
        if final < latest.position:
            raise LogBehindCheckpoint(latest, final)
        age = (datetime.now(UTC) - latest.at).total_seconds()
        return max(0.0, self.every - age)

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by until leading, then write checkpoints until ``stop`` (run it supervised)."""
        await led(self.dsn, "audit:checkpoints", self._lead, stop, standby_poll=self.standby_poll)

    async def _lead(self, until: asyncio.Event) -> None:
        self.active = True
        try:
            log.info("checkpoint.leading", every=self.every, key_id=self.key.key_id)
            wait = await self._first_wait()
            while not await _wait(until, wait):
                await self.tick()
                wait = self.every
        finally:
            self.active = False


async def _wait(until: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``; True as soon as ``until`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(until.wait(), seconds)
    return until.is_set()
