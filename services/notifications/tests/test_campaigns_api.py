"""CampaignsService over a real socket on a real PostgreSQL, segmentation and contacts served
for real: campaigns created as drafts (their templates and segments must exist), scheduled now,
at an instant or at a local time, paused, resumed, cancelled, read back and listed; a retried
request answered once; bad input refused with every problem named, nothing written; a change
the state forbids FAILED_PRECONDITION CAMPAIGN_STATE."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from crm.notifications.v1 import campaigns_pb2 as pb
from crm.notifications.v1 import events_pb2 as epb
from services.notifications.domain.campaigns import audience as a
from services.notifications.tests.campaign_env import CampaignEnv, campaign_env
from services.notifications.tests.conftest import expect_error

Variant = epb.CampaignVariant


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[CampaignEnv]:
    async with campaign_env(dsn) as e:
        await e.template("sale-a")
        await e.template("sale-b")
        await e.segment("vip", "vip")
        await e.segment("churned", "churned")
        yield e


def definition(**more: object) -> epb.CampaignDefinition:
    fields: dict[str, object] = {
        "name": "Black Friday",
        "include_segments": ["vip"],
        "exclude_segments": ["churned"],
        "variants": [Variant(name="a", template_key="sale-a", weight=1)],
        "holdout_basis_points": 1000,
        "throttle_per_minute": 600,
    }
    fields.update(more)
    return epb.CampaignDefinition(**fields)  # type: ignore[arg-type]


async def events(env: CampaignEnv) -> int:
    return int(
        await env.store.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE stream_id LIKE 'campaign-%'"
        )
    )


def at(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


async def test_a_campaign_is_created_scheduled_read_back_and_listed(env: CampaignEnv) -> None:
    made = await env.stub.CreateCampaign(pb.CreateCampaignRequest(definition=definition()))
    c = made.campaign
    assert c.state == pb.CAMPAIGN_STATE_DRAFT and c.definition == definition()
    assert not c.HasField("start_time") and c.create_time.seconds > 0
    got = (await env.stub.GetCampaign(pb.GetCampaignRequest(campaign_id=c.campaign_id))).campaign
    assert got == c
    later = datetime.now(UTC) + timedelta(days=1)
    schedule = epb.CampaignSchedule(send_time=at(later))
    done = await env.stub.ScheduleCampaign(
        pb.ScheduleCampaignRequest(campaign_id=c.campaign_id, schedule=schedule, etag=c.etag)
    )
    s = done.campaign
    assert s.state == pb.CAMPAIGN_STATE_SCHEDULED
    assert s.schedule.send_time.ToDatetime(tzinfo=UTC) == later
    local = epb.CampaignSchedule(
        local=epb.LocalSend(
            day="2099-11-27", time_of_day="09:00", fallback_time_zone="Europe/Paris"
        )
    )
    moved = await env.stub.ScheduleCampaign(
        pb.ScheduleCampaignRequest(campaign_id=c.campaign_id, schedule=local)
    )
    assert moved.campaign.schedule == local
    second = await env.stub.CreateCampaign(
        pb.CreateCampaignRequest(definition=definition(name="Cyber Monday"))
    )
    await env.settle()
    page = await env.stub.ListCampaigns(pb.ListCampaignsRequest(page_size=1))
    assert [x.definition.name for x in page.campaigns] == ["Cyber Monday"]
    assert page.campaigns[0] == second.campaign
    rest = await env.stub.ListCampaigns(pb.ListCampaignsRequest(page_token=page.next_page_token))
    assert [x.campaign_id for x in rest.campaigns] == [c.campaign_id]
    assert rest.campaigns[0].schedule == local and not rest.next_page_token


async def test_pause_resume_and_cancel(env: CampaignEnv) -> None:
    c = (await env.stub.CreateCampaign(pb.CreateCampaignRequest(definition=definition()))).campaign
    cid = c.campaign_id
    await expect_error(
        env.stub.PauseCampaign(pb.PauseCampaignRequest(campaign_id=cid)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CAMPAIGN_STATE",
    )
    later = epb.CampaignSchedule(send_time=at(datetime.now(UTC) + timedelta(hours=1)))
    await env.stub.ScheduleCampaign(pb.ScheduleCampaignRequest(campaign_id=cid, schedule=later))
    paused = await env.stub.PauseCampaign(pb.PauseCampaignRequest(campaign_id=cid))
    assert paused.campaign.state == pb.CAMPAIGN_STATE_PAUSED
    again = await env.stub.PauseCampaign(pb.PauseCampaignRequest(campaign_id=cid))
    assert again.campaign == paused.campaign  # idempotent: nothing written
    resumed = await env.stub.ResumeCampaign(pb.ResumeCampaignRequest(campaign_id=cid))
    assert resumed.campaign.state == pb.CAMPAIGN_STATE_SCHEDULED
    cancelled = await env.stub.CancelCampaign(pb.CancelCampaignRequest(campaign_id=cid))
    assert cancelled.campaign.state == pb.CAMPAIGN_STATE_CANCELLED
    before = await events(env)
    await expect_error(
        env.stub.ResumeCampaign(pb.ResumeCampaignRequest(campaign_id=cid)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CAMPAIGN_STATE",
    )
    await expect_error(
        env.stub.ScheduleCampaign(pb.ScheduleCampaignRequest(campaign_id=cid, schedule=later)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CAMPAIGN_STATE",
    )
    assert await events(env) == before
    types = [e.type.rsplit(".", 1)[1] for e in await env.store.read_stream(f"campaign-{cid}")]
    assert types == [
        "CampaignCreated",
        "CampaignScheduled",
        "CampaignPaused",
        "CampaignResumed",
        "CampaignCancelled",
    ]


async def test_a_retried_request_is_answered_once(env: CampaignEnv) -> None:
    rid = str(uuid.uuid4())
    first = await env.stub.CreateCampaign(
        pb.CreateCampaignRequest(definition=definition(), request_id=rid)
    )
    again = await env.stub.CreateCampaign(
        pb.CreateCampaignRequest(definition=definition(), request_id=rid)
    )
    assert again.campaign == first.campaign and await events(env) == 1


@pytest.mark.parametrize(
    "bad,reason,field",
    [
        (definition(name=""), "INVALID_NAME", "definition.name"),
        (definition(include_segments=[]), "SEGMENTS_REQUIRED", "definition.include_segments"),
        (definition(include_segments=["Not A Key"]), "INVALID_SEGMENT_KEY", None),
        (definition(exclude_segments=["vip"]), "SEGMENT_BOTH", "definition.exclude_segments"),
        (definition(variants=[]), "VARIANTS_REQUIRED", "definition.variants"),
        (
            definition(variants=[Variant(name="a", template_key="sale-a")] * 2),
            "VARIANT_REPEATED",
            "definition.variants[1].name",
        ),
        (definition(holdout_basis_points=10_000), "INVALID_HOLDOUT", None),
        (definition(throttle_per_minute=-1), "INVALID_THROTTLE", None),
        (
            definition(variants=[Variant(name="a", template_key="no-such")]),
            "TEMPLATE_NOT_FOUND",
            "definition.variants[0].template_key",
        ),
        (
            definition(include_segments=["no-such"]),
            "SEGMENT_NOT_FOUND",
            "definition.include_segments[0]",
        ),
    ],
)
async def test_a_bad_definition_is_refused_and_writes_nothing(
    env: CampaignEnv, bad: epb.CampaignDefinition, reason: str, field: str | None
) -> None:
    fields = await expect_error(
        env.stub.CreateCampaign(pb.CreateCampaignRequest(definition=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
    )
    if field is not None:
        assert field in fields
    assert await events(env) == 0


async def test_bad_schedules_and_ids_are_refused(env: CampaignEnv) -> None:
    c = (await env.stub.CreateCampaign(pb.CreateCampaignRequest(definition=definition()))).campaign
    cid = c.campaign_id
    past = epb.CampaignSchedule(send_time=at(datetime.now(UTC) - timedelta(hours=1)))
    cases = [
        (past, "SEND_TIME_PAST"),
        (epb.CampaignSchedule(), "SCHEDULE_REQUIRED"),
        (
            epb.CampaignSchedule(local=epb.LocalSend(day="2099-02-30", time_of_day="09:00")),
            "INVALID_DAY",
        ),
        (
            epb.CampaignSchedule(local=epb.LocalSend(day="2099-02-03", time_of_day="9am")),
            "INVALID_TIME",
        ),
        (
            epb.CampaignSchedule(
                local=epb.LocalSend(
                    day="2099-02-03", time_of_day="09:00", fallback_time_zone="Mars/Base"
                )
            ),
            "INVALID_TIME_ZONE",
        ),
        (
            epb.CampaignSchedule(local=epb.LocalSend(day="2001-02-03", time_of_day="09:00")),
            "SEND_TIME_PAST",
        ),
    ]
    for schedule, reason in cases:
        await expect_error(
            env.stub.ScheduleCampaign(
                pb.ScheduleCampaignRequest(campaign_id=cid, schedule=schedule)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )
    await expect_error(
        env.stub.GetCampaign(pb.GetCampaignRequest(campaign_id="nope")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CAMPAIGN_ID",
    )
    await expect_error(
        env.stub.GetCampaign(pb.GetCampaignRequest(campaign_id=str(uuid.uuid4()))),
        grpc.StatusCode.NOT_FOUND,
        "CAMPAIGN_NOT_FOUND",
    )
    stale = epb.CampaignSchedule(now=True)
    await expect_error(
        env.stub.ScheduleCampaign(
            pb.ScheduleCampaignRequest(campaign_id=cid, schedule=stale, etag="7")
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    assert await events(env) == 1


async def test_a_dry_run_shows_who_would_get_what_when_and_writes_nothing(
    env: CampaignEnv,
) -> None:
    zones = ["Asia/Tokyo", "America/New_York", "Europe/Paris"]
    members = {z: await env.contact(["vip"], time_zone=z) for z in zones}
    await env.contact(["vip", "churned"])
    await env.contact(["other"])
    await env.settle()
    two = [Variant(name="a", template_key="sale-a"), Variant(name="b", template_key="sale-b")]
    saved = (
        await env.stub.CreateCampaign(
            pb.CreateCampaignRequest(definition=definition(variants=two, holdout_basis_points=3000))
        )
    ).campaign
    cid = saved.campaign_id
    before = await events(env)
    run = await env.stub.DryRunCampaign(pb.DryRunCampaignRequest(campaign_id=cid))
    ids = sorted(members.values())
    assert (run.audience_size, run.audience_digest) == (3, a.digest(ids))
    variants = [a.Variant("a", "sale-a"), a.Variant("b", "sale-b")]
    expected = {c: a.variant_of(cid, c, variants, 3000) for c in ids}
    assert {r.contact_id: r.variant for r in run.recipients} == expected
    assert dict(run.variant_counts) == dict(Counter(expected.values()))
    spread = run.last_send_time.ToDatetime() - run.first_send_time.ToDatetime()
    assert not run.truncated and spread == timedelta(seconds=0.2)  # 600 a minute: 0.1 s apart

    # A draft at 09:00 in each recipient's zone: listed in send order, one shown.
    local = epb.CampaignSchedule(local=epb.LocalSend(day="2099-11-27", time_of_day="09:00"))
    draft = await env.stub.DryRunCampaign(
        pb.DryRunCampaignRequest(definition=definition(), schedule=local, max_recipients=1)
    )
    nine = {z: a.local_send_time(date(2099, 11, 27), time(9), ZoneInfo(z)) for z in zones}
    assert [r.contact_id for r in draft.recipients] == [members["Asia/Tokyo"]]
    assert draft.recipients[0].send_time.ToDatetime(tzinfo=UTC) == nine["Asia/Tokyo"]
    assert draft.truncated and draft.audience_size == 3
    assert draft.last_send_time.ToDatetime(tzinfo=UTC) == nine["America/New_York"]
    assert await events(env) == before
    assert await env.recipients(cid) == {}

    for request, reason in [
        (pb.DryRunCampaignRequest(), "CAMPAIGN_REQUIRED"),
        (pb.DryRunCampaignRequest(campaign_id=cid, definition=definition()), "CAMPAIGN_REQUIRED"),
        (
            pb.DryRunCampaignRequest(campaign_id=cid, max_recipients=10_001),
            "INVALID_MAX_RECIPIENTS",
        ),
        (pb.DryRunCampaignRequest(definition=definition(name="")), "INVALID_NAME"),
    ]:
        await expect_error(
            env.stub.DryRunCampaign(request), grpc.StatusCode.INVALID_ARGUMENT, reason
        )
