"""campaign_send_rate: a campaign (CampaignsService, notifications) to a segment of 100k times
BENCH_SCALE members, recipients per second from the ScheduleCampaign call (send now) to the
SMTP sink's acceptance of the last message, through the processes `make run` starts
(bench/notifications_suite.py): contacts serve and project, segmentation serve and project,
notifications serve, and notifications project (the campaign engine, which freezes the audience
from segmentation as of the start and asks each recipient's message of the send policy, and the
dispatcher) with the delivery workers sending to the sink.

Setup (never timed): the contacts imported through ImportContacts with a tag of this run, each
subscribed to email through RecordConsent; a segment of segmentation (`tags CONTAINS` that tag)
waited for until it counts them all (GetSegmentSizeHistory, now); a marketing email template;
the campaign created (that segment, one variant); notifications' read models caught up.

Baseline in the same run: plain smtplib resending the very messages the sink accepted, over
the same number of connections (bench/notifications.py, as notifications_email_rate). Goal:
ratio ≥ 0.5. The run is checked before it is reported: exactly one message per contact of the
segment, each Message-ID once, every decision SEND. The notes add how long freezing the audience
took (CampaignStarted's commit minus the schedule call), the decisions per second (the
campaign's MessageDecided events, from CampaignStarted to the last) and the CPU per recipient of
the suite's processes (PostgreSQL's not counted)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from bench import notifications_suite as ns
from bench.common import Metric, log, scaled
from bench.notifications import (
    _MESSAGE_ID,
    DISPATCH_BATCH,
    DISPATCH_POLL,
    _accepted,
    _plain_smtplib,
    _until_sink_has,
)
from bench.procs import CpuMeter
from crm.notifications.v1 import campaigns_pb2 as cpb
from crm.notifications.v1 import campaigns_pb2_grpc as cpb_grpc
from crm.notifications.v1 import events_pb2 as epb
from crm.segmentation.v1 import segmentation_pb2 as spb
from crm.segmentation.v1 import segmentation_pb2_grpc as spb_grpc
from shared.grpckit import calls

RECIPIENTS = 100_000  # the segment; BENCH_SCALE scales it
CONSENT_CALLERS = 32  # RecordConsent calls at once in the setup
DECIDED = "crm.notifications.v1.MessageDecided"
STARTED = "crm.notifications.v1.CampaignStarted"


async def _segment(suite: ns.Suite, key: str, tag: str, n: int) -> None:
    """A segment of the contacts tagged ``tag``; back once segmentation counts ``n`` members."""
    async with grpc.aio.insecure_channel(suite.segmentation) as ch:
        segs = spb_grpc.SegmentationServiceStub(ch)
        made = await segs.CreateSegment(
            spb.CreateSegmentRequest(
                key=key, name="Campaign bench", rule=f"tags CONTAINS '{tag}'", request_id=key
            ),
            metadata=ns.AUTH,
        )
        segment_id = made.segment.segment_id
        deadline = time.monotonic() + 300 + n / 100
        while True:
            now = calls.timestamp(datetime.now(UTC))
            sizes = await segs.GetSegmentSizeHistory(
                spb.GetSegmentSizeHistoryRequest(
                    segment_id=segment_id, start_time=now, end_time=now, points=1
                ),
                metadata=ns.AUTH,
            )
            members = sizes.points[0].members
            if members == n:
                return
            if members > n or time.monotonic() > deadline:
                raise RuntimeError(f"segment {key} has {members:,} members, wanted {n:,}")
            await asyncio.sleep(0.5)


async def _campaign(suite: ns.Suite, key: str) -> str:
    """A draft marketing campaign to segment ``key`` with template ``key``; its id."""
    async with grpc.aio.insecure_channel(suite.notifications) as ch:
        made = await cpb_grpc.CampaignsServiceStub(ch).CreateCampaign(
            cpb.CreateCampaignRequest(
                definition=epb.CampaignDefinition(
                    name="Campaign bench",
                    include_segments=[key],
                    kind=epb.MESSAGE_KIND_MARKETING,
                    variants=[epb.CampaignVariant(name="a", template_key=key, weight=1)],
                ),
                request_id=f"cbench-create-{key}",
            ),
            metadata=ns.AUTH,
        )
    return str(made.campaign.campaign_id)


async def _send_now(suite: ns.Suite, campaign_id: str) -> None:
    async with grpc.aio.insecure_channel(suite.notifications) as ch:
        await cpb_grpc.CampaignsServiceStub(ch).ScheduleCampaign(
            cpb.ScheduleCampaignRequest(
                campaign_id=campaign_id,
                schedule=epb.CampaignSchedule(now=True),
                request_id=f"cbench-schedule-{campaign_id}",
            ),
            metadata=ns.AUTH,
        )


async def _events(pool: asyncpg.Pool, campaign_id: str) -> dict[str, Any]:
    """From the log: CampaignStarted (audience size, commit time) and the campaign's
    MessageDecided events (how many, for how many contacts, how many SEND, the last one)."""
    started = await pool.fetchrow(
        """SELECT recorded_at, (data->>'audience_size')::bigint AS size FROM eventstore.events
           WHERE type = $1 AND data->>'campaign_id' = $2""",
        STARTED,
        campaign_id,
    )
    decided = await pool.fetchrow(
        """SELECT count(*) AS n, count(DISTINCT data->>'contact_id') AS contacts,
                  count(*) FILTER (WHERE data->>'outcome' = 'OUTCOME_SEND') AS sends,
                  max(recorded_at) AS last
           FROM eventstore.events WHERE type = $1 AND data->'trigger'->>'campaign_id' = $2""",
        DECIDED,
        campaign_id,
    )
    if started is None:
        raise RuntimeError(f"no CampaignStarted for campaign {campaign_id}")
    return {"started_at": started["recorded_at"], "audience": started["size"], **dict(decided)}


def _check(n: int, run: str, messages: list[tuple[str, bytes]], facts: dict[str, Any]) -> None:
    """The run is right, or no figure: n recipients frozen and decided SEND, n messages at the
    sink, n distinct Message-IDs, each contact of the segment exactly once."""
    if facts["audience"] != n or facts["n"] != n or facts["contacts"] != n or facts["sends"] != n:
        raise RuntimeError(
            f"audience {facts['audience']}, {facts['n']} decisions for {facts['contacts']}"
            f" contacts, {facts['sends']} SEND; wanted {n:,} each"
        )
    ids = {m.group(1) for _, data in messages if (m := _MESSAGE_ID.search(data))}
    recipients = {to for to, _ in messages}
    wanted = {ns.reader_email(run, i) for i in range(n)}
    if len(messages) != n or len(ids) != n or recipients != wanted:
        raise RuntimeError(
            f"the sink has {len(messages):,} messages, {len(ids):,} Message-IDs, "
            f"{len(recipients & wanted):,} of the {n:,} recipients, "
            f"{len(recipients - wanted)} others"
        )


async def send_rate(dsn: str, notes: list[str]) -> Metric:
    n = int(scaled(RECIPIENTS, minimum=500))
    run = ns.new_run()
    key = f"cbench-{run}"  # the tag, the segment's key and the template's key
    with tempfile.TemporaryDirectory(prefix="cbench-") as tmp:
        async with (
            ns.decision_side(dsn, Path(tmp), segmentation=True) as suite,
            ns.sink(suite),
        ):
            setup_started = time.perf_counter()
            log(f"  setup: {n:,} contacts tagged {key}, subscribed to email")
            await ns.subscribed_contacts(suite, n, run, tags=key, concurrency=CONSENT_CALLERS)
            log(f"  setup: segment {key}, waiting for {n:,} members")
            await _segment(suite, key, key, n)
            so_far = time.perf_counter() - setup_started
            log(f"  setup: the segment counts {n:,} members after {so_far:.0f}s")
            await ns.create_template(suite, key)
            campaign_id = await _campaign(suite, key)
            async with ns.delivery_side(suite, DISPATCH_BATCH, DISPATCH_POLL):
                await ns.project_caught_up(suite.pool)
                setup = time.perf_counter() - setup_started
                log(
                    f"  setup took {setup:.0f}s; campaign {campaign_id}: send now, {n:,} recipients"
                )
                meter = CpuMeter(suite.pids)
                wall_start = datetime.now(UTC)
                meter.start()
                started = time.perf_counter()
                await _send_now(suite, campaign_id)
                accepted = await _until_sink_has(suite, n, timeout=600 + n / 10)
                cpu = meter.stop()
                facts = await _events(suite.pool, campaign_id)
                notes.extend(suite.problems())
            messages = _accepted(suite.record)
            _check(n, run, messages, facts)
            log(f"  baseline: plain smtplib, the same {n:,} messages, {ns.SMTP_CONNECTIONS} conns")
            baseline = await asyncio.to_thread(_plain_smtplib, suite.smtp_port, messages)
    took = accepted - started
    freeze = (facts["started_at"] - wall_start).total_seconds()
    decision_rate = n / (facts["last"] - facts["started_at"]).total_seconds()
    ours = sum(v for k, v in cpu.items() if k != "cpu_pct_box_busy")
    cpu_ms = ours / 100 * took / n * 1000
    notes.append(
        f"campaign_send_rate: {n:,} recipients in {took:.1f}s ({n / took:,.0f}/s; setup"
        f" {setup:.0f}s); audience frozen {freeze:.2f}s after the schedule call; decisions"
        f" {decision_rate:,.0f}/s; {cpu_ms:.1f} ms of CPU per recipient in the suite's processes"
        f" (the box {cpu['cpu_pct_box_busy']}% busy)"
    )
    return Metric(
        "campaign_send_rate",
        n / took,
        "recipients/s",
        baseline,
        f"plain smtplib, the same {n:,} messages pre-rendered (as the sink accepted them), same "
        f"sink, {ns.SMTP_CONNECTIONS} connections",
        extra={
            "recipients": n,
            "smtp_connections": ns.SMTP_CONNECTIONS,
            "dispatch_batch_size": DISPATCH_BATCH,
            "dispatch_poll_seconds": DISPATCH_POLL,
            "seconds": round(took, 1),
            "setup_seconds": round(setup, 1),
            "audience_freeze_seconds": round(freeze, 3),
            "decisions_per_s": round(decision_rate, 1),
            "cpu_ms_per_recipient": round(cpu_ms, 2),
            **cpu,
        },
    )
