"""The notifications delivery workers under load: `delivery_worker_rss` (the worker's peak
resident memory while 100k emails go through it, goal < 200 MB) and
`delivery_worker_email_rate` (emails/s through the worker alone, against plain smtplib sending
the same pre-rendered messages, the first 20k of them, to the same SMTP sink over the same
number of connections). About ten minutes at BENCH_SCALE=1, nearly all of it the worker's 100k
emails. The suite's end-to-end rate (SendMessage to the sink) is bench/notifications.py.

The sink is services/notifications/tests/smtp_sink.py (aiosmtpd, its own process, counting
only). The worker is `python -m services.notifications delivery`, called through GrpcDelivery
in batches of 500, a few batches in flight."""

from __future__ import annotations

import asyncio
import smtplib
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import psutil  # type: ignore[import-untyped]

from bench.common import Metric, log, scaled
from bench.procs import ROOT, free_port, running, tail
from services.notifications.adapters.delivery_client import GrpcDelivery
from services.notifications.application.delivery import Outbound
from services.notifications.delivery import email_message
from services.notifications.domain import variant
from shared.testing import tokens

MESSAGES = 100_000
# The baseline's rate is steady after a few thousand sends: it sends the first 20k.
BASELINE_MESSAGES = 20_000
CONNECTIONS = 4  # SMTP_POOL_SIZE, and the baseline's connections
IN_FLIGHT = 4  # Deliver calls at once
BATCH = 500
DOMAIN = "bench.crm.localhost"
TEXT = "Hello Ada,\n\nthe 3 items in your cart are still waiting for you.\n" * 4
HTML = "<p>Hello <b>Ada</b>,</p><p>the 3 items in your cart are still waiting.</p>" * 4


def _message(n: int) -> Outbound:
    return Outbound(
        message_id=str(uuid.uuid4()),
        channel=variant.EMAIL,
        to=f"reader{n}@example.com",
        sender="Shop <news@shop.example>",
        subject="Your cart is waiting",
        text=TEXT,
        html=HTML,
        headers=(("List-Unsubscribe", f"<https://shop.example/u/{n}>"),),
    )


def _rendered(m: Outbound) -> bytes:
    return email_message.build(
        message_id_value=m.message_id,
        domain=DOMAIN,
        sender=m.sender,
        to=m.to,
        subject=m.subject,
        text=m.text,
        html=m.html,
        headers=m.headers,
        test=False,
        now=datetime.now(UTC),
    )


def _plain_smtplib(port: int, messages: list[tuple[str, bytes]]) -> float:
    """The same messages over CONNECTIONS plain smtplib connections, one thread each: msgs/s."""

    def send(share: list[tuple[str, bytes]]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as conn:
            for to, data in share:
                conn.sendmail("news@shop.example", [to], data)

    shares = [messages[i::CONNECTIONS] for i in range(CONNECTIONS)]
    started = time.perf_counter()
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(send, shares))
    return len(messages) / (time.perf_counter() - started)


async def _through_worker(target: str, messages: list[Outbound]) -> float:
    client = GrpcDelivery(target, tokens.SERVICE_TOKEN, timeout=300)
    batches = [messages[i : i + BATCH] for i in range(0, len(messages), BATCH)]
    queue: asyncio.Queue[list[Outbound]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    sent = 0

    async def caller() -> None:
        nonlocal sent
        while not queue.empty():
            outcomes = await client.deliver(queue.get_nowait())
            bad = [o for o in outcomes if o.status != "sent"]
            if bad:
                raise RuntimeError(f"{len(bad)} not sent, e.g. {bad[0]}")
            sent += len(outcomes)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    finally:
        await client.close()
    assert sent == len(messages)
    return sent / (time.perf_counter() - started)


async def worker_rss_and_rate(notes: list[str]) -> list[Metric]:
    count = int(scaled(MESSAGES, minimum=BATCH))
    smtp_port, grpc_port = free_port(), free_port()
    sink_args = ["-m", "services.notifications.tests.smtp_sink", str(smtp_port), "-"]
    async with running("delivery_sink", sink_args, {"PYTHONPATH": str(ROOT)}) as (sink, _):
        await asyncio.sleep(1)
        assert sink.returncode is None, "the SMTP sink did not start"
        messages = [_message(n) for n in range(count)]
        plain = min(count, BASELINE_MESSAGES)
        log(f"  baseline: plain smtplib, {plain:,} emails over {CONNECTIONS} connections")
        rendered = [(m.to, _rendered(m)) for m in messages[:plain]]
        baseline = await asyncio.to_thread(_plain_smtplib, smtp_port, rendered)
        del rendered
        env = {
            "GRPC_PORT": str(grpc_port),
            "METRICS_PORT": "0",
            "LOG_LEVEL": "WARNING",
            "SMTP_PORT": str(smtp_port),
            "SMTP_POOL_SIZE": str(CONNECTIONS),
            "DELIVERY_CONCURRENCY": str(4 * CONNECTIONS),
            "MESSAGE_ID_DOMAIN": DOMAIN,
            "CRM_TOKENS": tokens.TABLE,
        }
        args = ["-m", "services.notifications", "delivery"]
        async with running("delivery_worker", args, env) as (worker, log_path):
            await _wait_listening(grpc_port, worker, log_path)
            process = psutil.Process(worker.pid)
            idle_rss = process.memory_info().rss / 2**20
            log(f"  worker: {count:,} emails in batches of {BATCH}, {IN_FLIGHT} in flight")
            rate = await _through_worker(f"127.0.0.1:{grpc_port}", messages)
            peak = _peak_rss_mib(process)
    notes.append(
        f"delivery_worker_rss: idle {idle_rss:.0f} MiB, peak {peak:.0f} MiB over {count:,} emails"
    )
    return [
        Metric(
            "delivery_worker_rss",
            peak,
            "MiB",
            0.0,
            "— (peak resident set of the worker process, VmHWM)",
            extra={"messages": count, "idle_rss_mib": round(idle_rss, 1)},
        ),
        Metric(
            "delivery_worker_email_rate",
            rate,
            "emails/s",
            baseline,
            f"plain smtplib, same pre-rendered emails, same sink, {CONNECTIONS} connections",
            extra={
                "messages": count,
                "baseline_messages": plain,
                "connections": CONNECTIONS,
                "in_flight": IN_FLIGHT,
            },
        ),
    ]


def _peak_rss_mib(process: psutil.Process) -> float:
    """The kernel's high-water mark of the process's resident set (Linux), else its RSS now."""
    try:
        with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float(process.memory_info().rss) / 2**20


async def _wait_listening(port: int, proc: asyncio.subprocess.Process, log_path: object) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"the delivery worker exited:\n{tail(log_path)}")  # type: ignore[arg-type]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError("the delivery worker did not listen within 60 s")


if __name__ == "__main__":
    sys.exit("run it as: BENCH_ONLY=delivery_worker_rss make bench")
