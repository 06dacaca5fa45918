"""The notifications service's decision latency, through real processes
(bench/notifications_suite.py):

- notifications_decision_p99_ms: SendMessage to MessageDecided committed (SendMessage answers
  after its transaction commits), open loop at 200 calls/s (each call started on a fixed
  schedule, its latency counted from the scheduled start, so a slow call delays no other),
  without the dispatcher and workers (the decision does not wait for delivery). A call the
  serve role refuses (RESOURCE_EXHAUSTED TOO_MANY_REQUESTS: its calls in flight at the limit)
  counts as slower than any answer, so a rate it cannot sustain has an infinite p99. Baseline:
  the same open-loop load on contacts' GetContact, the decision's main upstream call. Goal:
  ≤ 50 ms. The same SendMessage load at 50/s is reported beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from bench import notifications_suite as ns
from bench.common import Metric, log, percentile, scaled
from bench.procs import CpuMeter
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc

RATE = 200.0  # calls/s, open loop
SECONDS = 20.0
# Reported beside it: the same SendMessage load at a rate this box sustains.
LOW_RATE = 50.0
LOW_SECONDS = 10.0
WARMUP_CALLS = 100  # before each measured load: channels, caches, connection pools
QUEUED = pb.MESSAGE_STATUS_QUEUED


# --- notifications_decision_p99_ms ---------------------------------------------------------------


async def open_loop(
    call: Callable[[int], Awaitable[None]], first: int, calls: int, rate: float
) -> tuple[list[float], dict[str, int]]:
    """call(first..first+calls-1), the i-th started at start + i/rate whatever the others do;
    each latency (ms) from its scheduled start; errors by status code."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    tasks = []
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
    start = clock() + 0.05

    async def timed(i: int, at: float) -> None:
        try:
            await call(first + i)
        except grpc.aio.AioRpcError as err:
            errors[err.code().name] = errors.get(err.code().name, 0) + 1
            return
        latencies.append((clock() - at) * 1000)

    for i in range(calls):
        at = start + i / rate
        if (wait := at - clock()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(timed(i, at)))
    await asyncio.gather(*tasks)
    return latencies, errors


def _summary(latencies: list[float], errors: dict[str, int]) -> dict[str, Any]:
    """p50/p99 with every refused call counted as slower than any answer (so a load the service
    sheds has an infinite p99), and those of the answered calls alone."""
    refused = sum(errors.values())
    every = latencies + [math.inf] * refused
    return {
        "p50_ms": round(percentile(every, 50), 2),
        "p99_ms": round(percentile(every, 99), 2),
        "answered_p50_ms": round(percentile(latencies, 50), 2),
        "answered_p99_ms": round(percentile(latencies, 99), 2),
        "answered_max_ms": round(max(latencies, default=math.nan), 2),
        "answered": len(latencies),
        "refused": errors,
    }


async def decision_p99(dsn: str, notes: list[str]) -> Metric:
    calls = int(scaled(RATE * SECONDS, minimum=200))
    low_calls = int(scaled(LOW_RATE * LOW_SECONDS, minimum=50))
    loads = [  # (name, rate, first contact, calls); the warm-up uses the first contacts
        ("GetContact", RATE, WARMUP_CALLS, calls),
        ("SendMessage", RATE, WARMUP_CALLS, calls),
        ("SendMessage_low", LOW_RATE, WARMUP_CALLS + calls, low_calls),
    ]
    run = ns.new_run()
    with tempfile.TemporaryDirectory(prefix="nbench-") as tmp:
        async with ns.decision_side(dsn, Path(tmp)) as suite:
            template_id = await ns.create_template(suite, f"cart-{run}")
            n = WARMUP_CALLS + calls + low_calls
            log(f"  setup: {n:,} contacts subscribed to email")
            ids = await ns.subscribed_contacts(suite, n, run)
            async with contextlib.AsyncExitStack() as stack:
                cch = await stack.enter_async_context(grpc.aio.insecure_channel(suite.contacts))
                nch = await stack.enter_async_context(
                    grpc.aio.insecure_channel(suite.notifications)
                )
                contacts = cpb_grpc.ContactsServiceStub(cch)
                notifications = pb_grpc.NotificationsServiceStub(nch)
                answers: dict[int, Any] = {}

                async def get_contact(i: int) -> None:
                    request = cpb.GetContactRequest(contact_id=ids[i])
                    await contacts.GetContact(request, metadata=ns.AUTH)

                async def send(i: int) -> None:
                    request = ns.send_request(template_id, ids[i], run)
                    answer = await notifications.SendMessage(request, metadata=ns.AUTH)
                    answers[i] = answer.message

                results = {}
                for name, rate, first, count in loads:
                    call = get_contact if name == "GetContact" else send
                    if name != "SendMessage_low":
                        await open_loop(call, 0, WARMUP_CALLS, rate)  # SendMessage: ids 0..99
                    log(f"  {name}: {count:,} calls at {rate:.0f}/s, open loop")
                    meter = CpuMeter(suite.pids)
                    meter.start()
                    lat, errors = await open_loop(call, first, count, rate)
                    results[name] = {**_summary(lat, errors), **meter.stop()}
                    await asyncio.sleep(2)  # what was shed or queued drains before the next
                notes.extend(suite.problems())
    not_queued = [a for a in answers.values() if a.status != QUEUED]
    if not_queued:
        raise RuntimeError(f"{len(not_queued)} not decided SEND, e.g. {not_queued[0]}")
    ours, low, theirs = results["SendMessage"], results["SendMessage_low"], results["GetContact"]
    notes.append(
        f"notifications_decision_p99_ms: at {RATE:.0f}/s SendMessage p50 {ours['p50_ms']} ms, "
        f"p99 {ours['p99_ms']} ms ({ours['answered']:,} answered: p99 {ours['answered_p99_ms']}"
        f" ms; refused {ours['refused'] or 'none'}); GetContact p50 {theirs['p50_ms']} ms, p99 "
        f"{theirs['p99_ms']} ms; at {LOW_RATE:.0f}/s SendMessage p50 {low['p50_ms']} ms, p99 "
        f"{low['p99_ms']} ms"
    )
    return Metric(
        "notifications_decision_p99_ms",
        ours["p99_ms"],
        "ms",
        theirs["p99_ms"],
        f"contacts' GetContact (the decision's main upstream call), the same open-loop load "
        f"({RATE:.0f}/s)",
        extra={
            "rate_per_s": RATE,
            "calls": calls,
            "send_message": ours,
            "get_contact": theirs,
            f"send_message_at_{LOW_RATE:.0f}_per_s": low,
        },
    )
