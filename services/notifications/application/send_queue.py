"""SendMessage calls that arrive together, decided together (application/batch_sending.py).

Natural batching: a call starts a batch at once when fewer than ``concurrency`` batches are
running; otherwise it waits for one of them to end, and every call that waited meanwhile goes
in the next batch (at most ``max_batch``). A lone call is therefore never held back, and under
load each batch pays one read, two calls to contacts and one transaction for all its messages.

A caller that gives up (its deadline, a cancelled call) does not take its message out of the
batch: the decision is made and recorded, and a retry with the same request id answers it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from services.notifications.application.batch_sending import send_many
from services.notifications.application.sending import MessageCommands, SendRequest
from services.notifications.domain import trail

Waiting = tuple[SendRequest, Mapping[str, Any], "asyncio.Future[trail.Trail]"]


class SendQueue:
    def __init__(
        self, commands: MessageCommands, max_batch: int = 100, concurrency: int = 2
    ) -> None:
        self.commands, self.max_batch, self.concurrency = commands, max_batch, concurrency
        self.waiting: list[Waiting] = []
        self.running: set[asyncio.Task[None]] = set()

    async def send(self, request: SendRequest, meta: Mapping[str, Any] = {}) -> trail.Trail:
        """The message with its first decision (as MessageCommands.send answers it)."""
        answer: asyncio.Future[trail.Trail] = asyncio.get_running_loop().create_future()
        # A caller gone before its answer (shielded) leaves an exception nobody reads: read it.
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.waiting.append((request, meta, answer))
        self._start()
        return await asyncio.shield(answer)

    def _start(self) -> None:
        while self.waiting and len(self.running) < self.concurrency:
            batch, self.waiting = self.waiting[: self.max_batch], self.waiting[self.max_batch :]
            task = asyncio.create_task(self._decide(batch))
            self.running.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self._start()

    async def _decide(self, batch: list[Waiting]) -> None:
        try:
            answers = await send_many(
                self.commands, [r for r, _, _ in batch], [m for _, m, _ in batch]
            )
        except BaseException as failed:
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(failed)
            if isinstance(failed, asyncio.CancelledError):
                raise
            return
        for (_, _, answer), got in zip(batch, answers, strict=True):
            if answer.done():
                continue
            if isinstance(got, BaseException):
                answer.set_exception(got)
            else:
                answer.set_result(got)
