"""Supervised background work. Every long-running worker of a role (projection runners,
reactors, timers) runs under ``supervise``: any error is logged with its stack trace, the worker
waits (exponential backoff with jitter, capped) and starts again from its durable state, for as
long as the process lives. ``Worker.healthy`` is what readiness reports: false from a failure
until the worker is running again."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from shared.metrics import WORKER_RESTARTS, WORKER_UP

log = structlog.get_logger(__name__)

# A worker that ran this long before failing starts its backoff from the beginning again.
STEADY_SECONDS = 30.0


@dataclass(eq=False)  # one worker is one identity: hashable by id
class Worker:
    name: str
    healthy: bool = False
    failures: int = 0  # consecutive failures (reset once it has run steadily)
    last_error: str = ""


async def supervise(
    worker: Worker,
    run: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    *,
    backoff: float = 0.25,
    max_backoff: float = 5.0,
) -> None:
    """Run ``run()`` until ``stop`` is set, restarting it after any failure. ``run`` must return
    only once ``stop`` is set; returning earlier counts as a failure too."""
    while not stop.is_set():
        started = time.monotonic()
        _set(worker, healthy=True)
        try:
            await run()
            if stop.is_set():
                break
            raise RuntimeError(f"worker {worker.name} returned while the role is running")
        except Exception as exc:
            if stop.is_set():
                break  # errors while shutting down (connections closing) are not news
            _set(worker, healthy=False)
            if time.monotonic() - started > STEADY_SECONDS:
                worker.failures = 0
            worker.failures += 1
            worker.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            delay = min(max_backoff, backoff * 2 ** (worker.failures - 1))
            delay *= random.uniform(0.5, 1.0)  # replicas do not retry in lockstep
            WORKER_RESTARTS.labels(worker.name).inc()
            log.error(
                "worker.failed",
                worker=worker.name,
                failures=worker.failures,
                retry_in=round(delay, 3),
                exc_info=exc,
            )
            await sleep_unless_stopped(stop, delay)
    _set(worker, healthy=False)


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set. (asyncio.wait, not wait_for: on Python 3.11
    wait_for can swallow a cancellation that arrives as the wake-up does.)"""
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()


async def tick_until_stopped(
    stop: asyncio.Event, tick: Callable[[], Awaitable[int]], batch: int, poll_seconds: float
) -> None:
    """A polling worker's loop: ``tick`` (it returns how much it took) until ``stop``; again at
    once after a full batch (a backlog), after ``poll_seconds`` otherwise."""
    while not stop.is_set():
        if await tick() < batch:
            await sleep_unless_stopped(stop, poll_seconds)


def _set(worker: Worker, *, healthy: bool) -> None:
    worker.healthy = healthy
    WORKER_UP.labels(worker.name).set(1 if healthy else 0)
