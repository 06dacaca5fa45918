"""The notifications service end to end, through real processes (bench/notifications_suite.py)
(the decision latency: bench/notifications_latency.py):

- notifications_email_rate: marketing emails decided, rendered and accepted by the SMTP sink
  per second: SendMessages, the bulk API (batches of BULK requests, BULK_CALLERS calls at
  once) → the policy and the outbox → the dispatcher (project role) → the delivery workers →
  aiosmtpd, timed from the first call to the sink's last acceptance. Beside it (extra
  `single_calls`), a third as many emails through SendMessage, one message a call from
  CALLERS callers at once (the serve role batches calls that arrive together). Baseline in
  the same run: plain smtplib sending the very messages the sink accepted (so the same bytes),
  pre-rendered, to the same sink over the same number of connections (the workers' SMTP
  pool). Goal: ratio ≥ 0.5.
"""

from __future__ import annotations

import asyncio
import base64
import re
import smtplib
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import orjson

from bench import notifications_suite as ns
from bench.common import Metric, log, scaled
from bench.procs import CpuMeter
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc

EMAILS = 6_000  # 1-2 min end to end on the shared 2-core box at BENCH_SCALE=1
CALLERS = 8  # SendMessage callers at once
BULK = 100  # requests in a SendMessages call
BULK_CALLERS = 4  # SendMessages calls at once
# The dispatcher's settings (they exist: DISPATCH_BATCH_SIZE, DISPATCH_POLL_SECONDS): batches
# of 500 (what one Deliver call takes), and a 0.2 s idle poll so the first batch is not held up
# by the default 1 s poll; a full batch ticks again at once whatever the poll.
DISPATCH_BATCH = 500
DISPATCH_POLL = 0.2
RATE = 200.0  # calls/s, open loop
SECONDS = 20.0
# Reported beside it: the same SendMessage load at a rate this box sustains.
LOW_RATE = 50.0
LOW_SECONDS = 10.0
WARMUP_CALLS = 100  # before each measured load: channels, caches, connection pools
QUEUED = pb.MESSAGE_STATUS_QUEUED
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.MULTILINE | re.IGNORECASE)


# --- notifications_email_rate --------------------------------------------------------------------


def _accepted(record: Path) -> list[tuple[str, bytes]]:
    """The (recipient, message) pairs the sink recorded."""
    out = []
    with record.open("rb") as f:
        for line in f:
            r = orjson.loads(line)
            out.append((r["rcpt_tos"][0], base64.b64decode(r["data"])))
    return out


def _plain_smtplib(port: int, messages: list[tuple[str, bytes]]) -> float:
    """The same messages over SMTP_CONNECTIONS plain smtplib connections, a thread each: /s."""
    n = ns.SMTP_CONNECTIONS

    def send(share: list[tuple[str, bytes]]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as conn:
            for to, data in share:
                conn.sendmail("news@shop.example", [to], data)

    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(send, [messages[i::n] for i in range(n)]))
    return len(messages) / (time.perf_counter() - started)


async def _send_all(suite: ns.Suite, template_id: str, ids: list[str], run: str) -> list[Any]:
    """One SendMessage a contact, CALLERS at once; the messages."""
    async with grpc.aio.insecure_channel(suite.notifications) as ch:
        stub = pb_grpc.NotificationsServiceStub(ch)
        answers: list[Any] = [None] * len(ids)

        async def one(i: int) -> None:
            request = ns.send_request(template_id, ids[i], run)
            answers[i] = (await stub.SendMessage(request, metadata=ns.AUTH)).message

        await ns.gather_bounded(len(ids), CALLERS, one)
    return answers


async def _send_bulk(suite: ns.Suite, template_id: str, ids: list[str], run: str) -> list[Any]:
    """SendMessages of BULK contacts a call, BULK_CALLERS calls at once; the messages."""
    async with grpc.aio.insecure_channel(suite.notifications) as ch:
        stub = pb_grpc.NotificationsServiceStub(ch)
        chunks = [ids[i : i + BULK] for i in range(0, len(ids), BULK)]
        answers: list[list[Any]] = [[] for _ in chunks]

        async def one(i: int) -> None:
            batch = pb.SendMessagesRequest(
                requests=[ns.send_request(template_id, c, run) for c in chunks[i]]
            )
            got = await stub.SendMessages(batch, metadata=ns.AUTH)
            for r in got.results:
                if r.HasField("refusal"):
                    raise RuntimeError(f"refused: {r.refusal}")
            answers[i] = [r.message for r in got.results]

        await ns.gather_bounded(len(chunks), BULK_CALLERS, one)
    return [m for chunk in answers for m in chunk]


async def _end_to_end(
    suite: ns.Suite,
    send: Callable[[ns.Suite, str, list[str], str], Awaitable[list[Any]]],
    template_id: str,
    ids: list[str],
    run: str,
) -> dict[str, Any]:
    """``send`` to ``ids`` with the delivery side running, until the sink has them all: the
    rate, the decisions' rate, CPU per email."""
    meter = CpuMeter(suite.pids)
    wall_start = datetime.now(UTC)
    before = suite.sink_count()
    meter.start()
    started = time.perf_counter()
    answers = await send(suite, template_id, ids, run)
    decided = time.perf_counter()
    n = len(ids)
    accepted = await _until_sink_has(suite, before + n, timeout=600 + n / 10)
    cpu = meter.stop()
    dispatched_at = await suite.pool.fetchval(
        """SELECT max(recorded_at) FROM eventstore.events
           WHERE type = 'crm.notifications.v1.MessageDispatched'"""
    )
    not_queued = [a for a in answers if a.status != QUEUED]
    if not_queued:
        raise RuntimeError(f"{len(not_queued)} not decided SEND, e.g. {not_queued[0]}")
    took = accepted - started
    ours = sum(v for k, v in cpu.items() if k != "cpu_pct_box_busy")
    return {
        "rate": n / took,
        "messages": n,
        "seconds": round(took, 1),
        "decisions_per_s": round(n / (decided - started), 1),
        "dispatched_per_s": round(n / (dispatched_at - wall_start).total_seconds(), 1),
        # CPU of the suite's processes and the sink (not PostgreSQL's) per email: steadier
        # than the rate on a shared box.
        "cpu_ms_per_email": round(ours / 100 * took / n * 1000, 2),
        **cpu,
    }


async def _until_sink_has(suite: ns.Suite, n: int, timeout: float) -> float:
    """Wait until the sink accepted ``n`` messages in all; the perf_counter when it had."""
    deadline = time.monotonic() + timeout
    while (got := suite.sink_count()) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sink has {got:,} of {n:,} messages after {timeout:.0f}s")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def email_rate(dsn: str, notes: list[str]) -> Metric:
    n = int(scaled(EMAILS, minimum=200))
    single_n = max(100, n // 3)
    run = ns.new_run()
    with tempfile.TemporaryDirectory(prefix="nbench-") as tmp:
        async with ns.decision_side(dsn, Path(tmp)) as suite, ns.sink(suite):
            template_id = await ns.create_template(suite, f"cart-{run}")
            log(f"  setup: {n + single_n:,} contacts subscribed to email")
            ids = await ns.subscribed_contacts(suite, n + single_n, run)
            async with ns.delivery_side(suite, DISPATCH_BATCH, DISPATCH_POLL):
                await ns.project_caught_up(suite.pool)
                log(f"  end to end: {n:,} by SendMessages ({BULK} a call, {BULK_CALLERS} calls)")
                bulk = await _end_to_end(suite, _send_bulk, template_id, ids[:n], run)
                log(f"  end to end: {single_n:,} by SendMessage, {CALLERS} callers")
                single = await _end_to_end(suite, _send_all, template_id, ids[n:], run)
                notes.extend(suite.problems())
            messages = _accepted(suite.record)[:n]
            ids_sent = {m.group(1) for _, data in messages if (m := _MESSAGE_ID.search(data))}
            if len(messages) != n or len(ids_sent) != n:
                raise RuntimeError(f"the sink has {len(messages)} messages, {len(ids_sent)} ids")
            log(f"  baseline: plain smtplib, the same {n:,} messages, {ns.SMTP_CONNECTIONS} conns")
            baseline = await asyncio.to_thread(_plain_smtplib, suite.smtp_port, messages)
    notes.append(
        f"notifications_email_rate: {n:,} emails by SendMessages in {bulk['seconds']}s"
        f" ({bulk['rate']:,.0f}/s; decisions {bulk['decisions_per_s']:,.0f}/s, dispatched"
        f" {bulk['dispatched_per_s']:,.0f}/s; {bulk['cpu_ms_per_email']} ms of CPU per email in"
        f" the suite's processes, the box {bulk['cpu_pct_box_busy']}% busy); {single_n:,} by"
        f" SendMessage one a call, {CALLERS} callers: {single['rate']:,.0f}/s (decisions"
        f" {single['decisions_per_s']:,.0f}/s, {single['cpu_ms_per_email']} ms of CPU per email)"
    )
    return Metric(
        "notifications_email_rate",
        bulk["rate"],
        "emails/s",
        baseline,
        f"plain smtplib, the same {n:,} messages pre-rendered (as the sink accepted them), same "
        f"sink, {ns.SMTP_CONNECTIONS} connections",
        extra={
            "api": f"SendMessages, {BULK} requests a call, {BULK_CALLERS} calls at once",
            "smtp_connections": ns.SMTP_CONNECTIONS,
            "dispatch_batch_size": DISPATCH_BATCH,
            "dispatch_poll_seconds": DISPATCH_POLL,
            **bulk,
            "single_calls": {"api": f"SendMessage, {CALLERS} callers", **single},
        },
    )
