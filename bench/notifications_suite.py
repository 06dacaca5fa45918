"""The processes and the data the notifications benchmarks (bench/notifications.py) run on, as
`make run` starts them: contacts serve and project (GetContact and GetConsent read its read
models), segmentation serve and project when campaigns need segments (bench/campaigns.py),
notifications serve (SendMessage), and for the end-to-end rate notifications project
(the dispatcher and the campaign engine) and the delivery workers pointed at the SMTP sink
(services/notifications/tests/smtp_sink.py, aiosmtpd in its own process). Orders' target is a
closed port: the template reads no `metrics`, and a hidden call to orders would fail loudly.

Setup (never timed): a marketing email template reading the contact's name, and contacts
imported through contacts' ImportContacts, each subscribed to email through RecordConsent."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from bench.common import log
from bench.procs import free_port, running, service_env, tail, wait_serving
from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc as kpb_grpc
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.contacts.cli import import_csv
from services.notifications.adapters.flow_dates import FlowDates
from services.notifications.adapters.flow_engine import FlowEngine
from services.notifications.app import PROJECTIONS
from services.segmentation.adapters.engine import MembershipEngine
from shared.grpckit.client import bearer
from shared.projections.checkpoints import wait_for_checkpoint
from shared.testing import tokens

AUTH = bearer(tokens.SERVICE_TOKEN)
_EVENTLET_NOTICE = re.compile(r"\S*: EventletDeprecationWarning:.*?\n\s*import eventlet\n?", re.S)
SEGMENTATION_ENGINE = MembershipEngine.name  # its checkpoint
SMTP_CONNECTIONS = 4  # the workers' SMTP_POOL_SIZE (its default) and the baseline's connections
MESSAGE_ID_DOMAIN = "bench.crm.localhost"
SUBJECT = "{{ contact.first_name }}, your cart is waiting"
TEXT = (
    "Hello {{ contact.first_name }} {{ contact.last_name }},\n\n"
    "the items in your cart are still waiting for you.\n" * 4
)
HTML = (
    "<p>Hello <b>{{ contact.first_name }} {{ contact.last_name }}</b>,</p>"
    "<p>the items in your cart are still waiting.</p>" * 4
)


@dataclass
class Suite:
    """The running processes' addresses and the bench's pool on the same database."""

    dsn: str
    pool: asyncpg.Pool
    contacts: str = ""
    segmentation: str = ""  # serve's address, when the suite runs segmentation
    notifications: str = ""
    smtp_port: int = 0
    record: Path = Path()
    pids: dict[str, int] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    _read: tuple[int, int] = (0, 0)  # (bytes of the record counted, lines in them)

    def sink_count(self) -> int:
        """Messages the sink accepted: it appends one line per message to its record (read
        from where the last count stopped)."""
        offset, lines = self._read
        with self.record.open("rb") as f:
            f.seek(offset)
            more = f.read()
        self._read = (offset + len(more), lines + more.count(b"\n"))
        return self._read[1]

    def problems(self) -> list[str]:
        """What the processes logged at WARNING or above (LOG_LEVEL=WARNING), a few lines each;
        not the delivery role's start-up notice that eventlet is in bug-fix-only mode."""
        out = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace") if path.exists() else ""
            text = _EVENTLET_NOTICE.sub("", text).strip()
            if text:
                out.append(f"{name} logged: {chr(10).join(text.splitlines()[-5:])}")
        return out


@contextlib.asynccontextmanager
async def _grpc_role(
    suite: Suite, name: str, module: str, role: str, env: dict[str, str]
) -> AsyncIterator[str]:
    port = free_port()
    args = ["-m", module, role]
    async with running(f"nbench-{name}", args, {**service_env(suite.dsn, port), **env}) as (
        proc,
        path,
    ):
        await wait_serving(port, proc, path)
        suite.pids[name], suite.logs[name] = proc.pid, path
        yield f"127.0.0.1:{port}"


def _notifications_env(suite: Suite) -> dict[str, str]:
    # Without segmentation, its default address is left: nothing here asks it then.
    segmentation = {"SEGMENTATION_TARGET": suite.segmentation} if suite.segmentation else {}
    return {
        **segmentation,
        "CONTACTS_TARGET": suite.contacts,
        "ORDERS_TARGET": f"127.0.0.1:{free_port()}",  # closed: no template here reads metrics
        "EMAIL_FROM": "Shop <news@shop.example>",
        "TRACKING_BASE_URL": "https://shop.example/t",  # List-Unsubscribe on marketing email
        "TRACKING_SECRET": "bench-tracking-secret",
        "UNSUBSCRIBE_MAILTO": "unsubscribe@shop.example",
    }


@contextlib.asynccontextmanager
async def decision_side(dsn: str, tmp: Path, segmentation: bool = False) -> AsyncIterator[Suite]:
    """contacts serve + project, notifications serve: what SendMessage's decision needs; with
    ``segmentation``, its serve and project roles too (a campaign's segments and members), its
    membership engine starting at the head of the log (earlier benchmarks' events are not
    this one's)."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    suite = Suite(dsn, pool, record=tmp / "sink.jsonl")
    try:
        async with contextlib.AsyncExitStack() as stack:
            c = "services.contacts"
            suite.contacts = await stack.enter_async_context(
                _grpc_role(suite, "contacts-serve", c, "serve", {})
            )
            await stack.enter_async_context(_grpc_role(suite, "contacts-project", c, "project", {}))
            if segmentation:
                s, target = "services.segmentation", {"CONTACTS_TARGET": suite.contacts}
                suite.segmentation = await stack.enter_async_context(
                    _grpc_role(suite, "segmentation-serve", s, "serve", target)
                )
                await pool.execute(
                    """INSERT INTO projections.checkpoints (name, position)
                       SELECT $1, coalesce(max(position), 0) FROM eventstore.events
                       ON CONFLICT (name) DO UPDATE SET position = excluded.position""",
                    SEGMENTATION_ENGINE,
                )
                await stack.enter_async_context(
                    _grpc_role(suite, "segmentation-project", s, "project", target)
                )
            suite.notifications = await stack.enter_async_context(
                _grpc_role(
                    suite, "notifications-serve", "services.notifications", "serve",
                    _notifications_env(suite),
                )
            )  # fmt: skip
            yield suite
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def sink(suite: Suite) -> AsyncIterator[None]:
    """The SMTP sink recording every accepted message (one JSON line each) to suite.record."""
    suite.smtp_port = free_port()
    suite.record.touch()
    args = ["-m", "services.notifications.tests.smtp_sink", str(suite.smtp_port), str(suite.record)]
    async with running("nbench-smtp-sink", args, {}) as (proc, path):
        deadline = time.monotonic() + 30
        while b"ready" not in path.read_bytes():
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SMTP sink did not start:\n{tail(path)}")
            await asyncio.sleep(0.05)
        suite.pids["smtp-sink"] = proc.pid
        yield


@contextlib.asynccontextmanager
async def delivery_side(suite: Suite, batch_size: int, poll_seconds: float) -> AsyncIterator[None]:
    """The delivery workers (sending to the sink) and notifications project (the dispatcher)."""
    port = free_port()
    env = {
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "SMTP_PORT": str(suite.smtp_port),
        "SMTP_POOL_SIZE": str(SMTP_CONNECTIONS),
        "MESSAGE_ID_DOMAIN": MESSAGE_ID_DOMAIN,
        "CRM_TOKENS": tokens.TABLE,
    }
    args = ["-m", "services.notifications", "delivery"]
    async with running("nbench-delivery", args, env) as (worker, path):
        await wait_serving(port, worker, path)
        suite.pids["delivery"], suite.logs["delivery"] = worker.pid, path
        project_env = {
            **_notifications_env(suite),
            "DELIVERY_URL": f"127.0.0.1:{port}",
            "DISPATCH_BATCH_SIZE": str(batch_size),
            "DISPATCH_POLL_SECONDS": str(poll_seconds),
        }
        module = "services.notifications"
        async with _grpc_role(suite, "notifications-project", module, "project", project_env):
            yield


# --- setup ---------------------------------------------------------------------------------------


async def create_template(suite: Suite, key: str) -> str:
    async with grpc.aio.insecure_channel(suite.notifications) as ch:
        made = await pb_grpc.NotificationsServiceStub(ch).CreateTemplate(
            pb.CreateTemplateRequest(
                key=key,
                name="Cart reminder",
                channel=epb.CHANNEL_EMAIL,
                variants=[epb.TemplateVariant(subject=SUBJECT, text=TEXT, html=HTML)],
                request_id=f"nbench-{key}",
            ),
            metadata=AUTH,
        )
    return str(made.template.template_id)


async def gather_bounded(n: int, concurrency: int, call: Callable[[int], Awaitable[Any]]) -> None:
    """call(0..n-1) with at most ``concurrency`` in flight; the first failure is raised."""
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            await call(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def subscribed_contacts(
    suite: Suite, n: int, tag: str, tags: str = "", concurrency: int = 16
) -> list[str]:
    """``n`` contacts imported (names, email, and ``tags`` if any), each subscribed to email
    (``concurrency`` calls at once); their ids, once both of contacts' read models have applied
    everything."""
    after = await suite.pool.fetchval("SELECT coalesce(max(position), 0) FROM eventstore.events")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["email", "first_name", "last_name", *(["tags"] if tags else [])])
            for i in range(n):
                row = [reader_email(tag, i), f"Reader{i}", f"Family{i % 97}"]
                w.writerow([*row, tags] if tags else row)
        response, local = await import_csv(path, suite.contacts, token=tokens.SERVICE_TOKEN)
    if response.created != n or response.failed or local.errors:
        raise RuntimeError(f"import: {response.created} created, {response.failed} failed")
    ids = [
        str(r[0])
        for r in await suite.pool.fetch(
            """SELECT data->>'contact_id' FROM eventstore.events WHERE category = 'contact'
               AND type = 'crm.contacts.v1.ContactRegistered' AND position > $1
               ORDER BY position""",
            after,
        )
    ]
    async with grpc.aio.insecure_channel(suite.contacts) as ch:
        consents = kpb_grpc.ConsentServiceStub(ch)

        async def subscribe(i: int) -> None:
            await consents.RecordConsent(
                kpb.RecordConsentRequest(
                    contact_id=ids[i],
                    channel=kpb.CHANNEL_EMAIL,
                    state=kpb.CONSENT_STATE_SUBSCRIBED,
                    legal_basis=kpb.LEGAL_BASIS_CONSENT,
                    source="bench",
                    policy_version="2026-01",
                    request_id=f"nbench-consent-{ids[i]}",
                ),
                metadata=AUTH,
            )

        started = time.perf_counter()
        await gather_bounded(len(ids), concurrency, subscribe)
        log(f"  {len(ids):,} contacts subscribed in {time.perf_counter() - started:.0f}s")
    head = await suite.pool.fetchval("SELECT max(position) FROM eventstore.events")
    for projection in ("contacts", "consent"):
        await wait_for_checkpoint(suite.pool, projection, head, timeout=300)
    return ids


async def project_caught_up(pool: asyncpg.Pool) -> None:
    """notifications project's read models and flow engine have applied the whole log (the
    setup's events, and earlier benchmarks' in a full run), so a timed part pays only for
    its own work."""
    head = await pool.fetchval("SELECT coalesce(max(position), 0) FROM eventstore.events")
    for name in [p.name for p in PROJECTIONS] + [FlowEngine.name, FlowDates.name]:
        await wait_for_checkpoint(pool, name, head, timeout=900)


def reader_email(tag: str, i: int) -> str:
    """The ``i``-th contact's address in subscribed_contacts(..., tag)."""
    return f"reader-{tag}-{i}@mail.example"


def send_request(template_id: str, contact_id: str, run: str) -> pb.SendMessageRequest:
    return pb.SendMessageRequest(
        contact_id=contact_id,
        template_id=template_id,
        kind=epb.MESSAGE_KIND_MARKETING,
        request_id=f"nbench-{run}-{contact_id}",
    )


def new_run() -> str:
    return uuid.uuid4().hex[:8]
