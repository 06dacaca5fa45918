"""The campaign engine for real: segments computed by segmentation from contacts' tags, the
audience frozen at the start (include minus exclude) and provable from segmentation's history
later, each recipient decided by the real pipeline (consent at contacts), held-out contacts sent
nothing, nobody sent twice whatever restarts; a local time of day per recipient's zone; the
throttle, pause, resume and cancel."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest

from crm.notifications.v1 import campaigns_pb2 as pb
from crm.notifications.v1 import events_pb2 as epb
from services.notifications.adapters.campaign_tables import TABLE
from services.notifications.domain.campaigns import audience as a
from services.notifications.tests.campaign_env import CampaignEnv, campaign_env
from services.notifications.tests.conftest import expect_error

Variant = epb.CampaignVariant
VARIANTS = [a.Variant("a", "sale-a"), a.Variant("b", "sale-b")]


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[CampaignEnv]:
    async with campaign_env(dsn) as e:
        await e.template("sale-a")
        await e.template("sale-b")
        await e.segment("vip", "vip")
        await e.segment("churned", "churned")
        yield e


async def create(env: CampaignEnv, holdout: int = 0, throttle: int = 0) -> str:
    c = await env.create(
        name="Black Friday",
        include_segments=["vip"],
        exclude_segments=["churned"],
        variants=[
            Variant(name="a", template_key="sale-a"),
            Variant(name="b", template_key="sale-b"),
        ],
        holdout_basis_points=holdout,
        throttle_per_minute=throttle,
    )
    return c.campaign_id


async def schedule(env: CampaignEnv, cid: str, schedule: epb.CampaignSchedule) -> None:
    await env.stub.ScheduleCampaign(pb.ScheduleCampaignRequest(campaign_id=cid, schedule=schedule))
    await env.settle()


async def get(env: CampaignEnv, cid: str) -> pb.Campaign:
    return (await env.stub.GetCampaign(pb.GetCampaignRequest(campaign_id=cid))).campaign


async def test_a_campaign_reaches_its_consenting_members_once_and_holds_out_some(
    env: CampaignEnv,
) -> None:
    cid = await create(env, holdout=5000)
    held: list[str] = []
    reached: list[str] = []
    while len(held) < 2 or len(reached) < 3:  # members on both sides of the holdout
        contact = await env.contact(["vip"])
        side = a.variant_of(cid, contact, VARIANTS, 5000)
        (held if side == a.HOLDOUT else reached).append(contact)
    unsubscribed = await env.contact(["vip"], subscribed=False)
    while a.variant_of(cid, unsubscribed, VARIANTS, 5000) == a.HOLDOUT:
        held.append(unsubscribed)  # held out: nothing asked, whatever the consent
        unsubscribed = await env.contact(["vip"], subscribed=False)
    excluded = await env.contact(["vip", "churned"])
    outsider = await env.contact(["other"])
    await env.settle()
    await schedule(env, cid, epb.CampaignSchedule(now=True))

    engine = env.engine()
    await engine.tick()  # started: the audience frozen
    rows = await env.recipients(cid)
    audience = sorted([*held, *reached, unsubscribed])
    assert sorted(rows) == audience and excluded not in rows and outsider not in rows
    assert {c for c, r in rows.items() if r["variant"] == a.HOLDOUT} == set(held)
    await engine.tick()  # the recipients decided
    await env.store.pool.execute(  # a crash before the batch was marked: it is taken again
        f"UPDATE {TABLE} SET done_at = NULL, outcome = '' WHERE campaign_id = $1::uuid", cid
    )
    restarted = env.engine()
    await restarted.tick()
    await restarted.tick()  # nothing left: completed
    await restarted.tick()

    decisions = await env.decisions(cid)
    per_contact = Counter(dd["contact_id"] for dd in decisions)
    assert set(per_contact) == {*reached, unsubscribed}  # the held-out got nothing
    assert all(n == 1 for n in per_contact.values())  # nobody twice
    outcome = {dd["contact_id"]: dd["outcome"] for dd in decisions}
    assert outcome[unsubscribed] == "OUTCOME_SKIP"
    assert {c for c, o in outcome.items() if o == "OUTCOME_SEND"} == set(reached)
    for dd in decisions:
        expected = a.variant_of(cid, dd["contact_id"], VARIANTS, 5000)
        assert (dd["trigger"]["source"], dd["trigger"]["variant"]) == ("campaign", expected)

    c = await get(env, cid)
    assert c.state == pb.CAMPAIGN_STATE_COMPLETED
    assert (c.audience_size, c.audience_digest) == (len(audience), a.digest(audience))
    assert c.tally == epb.CampaignTally(sent=len(reached), skipped=1, held_out=len(held))
    # Provable later: the segments' members as of the recorded instant give the same digest.
    as_of = c.start_time.ToDatetime(tzinfo=UTC)
    ids = await env.upstreams.segments.ids_of(["vip", "churned"])
    again = a.freeze(
        [await env.upstreams.segments.members(ids["vip"], as_of)],
        [await env.upstreams.segments.members(ids["churned"], as_of)],
    )
    assert again.digest == c.audience_digest
    types = [e.type.rsplit(".", 1)[1] for e in await env.store.read_stream(f"campaign-{cid}")]
    assert types == ["CampaignCreated", "CampaignScheduled", "CampaignStarted", "CampaignCompleted"]


async def test_a_local_time_reaches_each_recipient_at_that_time_in_their_zone(
    env: CampaignEnv,
) -> None:
    zones = ["Asia/Tokyo", "Europe/Paris", "America/New_York", ""]
    contacts = {z: await env.contact(["vip"], time_zone=z) for z in zones}
    await env.settle()
    cid = await create(env)
    # A time of day whose first occurrence (UTC+14) is now: the campaign starts at once.
    first = (datetime.now(UTC) + timedelta(hours=14)).replace(second=0, microsecond=0)
    day, at = first.date(), first.time()
    local = epb.LocalSend(
        day=day.isoformat(), time_of_day=at.strftime("%H:%M"), fallback_time_zone="Europe/London"
    )
    await schedule(env, cid, epb.CampaignSchedule(local=local))
    engine = env.engine()
    await engine.tick()
    rows = await env.recipients(cid)
    due = {z: rows[contacts[z]]["due_at"] for z in zones}
    for z in zones:
        assert due[z] == a.local_send_time(day, at, ZoneInfo(z or "Europe/London"))
    # Each zone's recipient is sent to once its local time has come, not before.
    order = sorted(zones, key=lambda z: due[z])
    for i, z in enumerate(order):
        env.clock.offset = due[z] - datetime.now(UTC) - timedelta(seconds=1)
        await engine.tick()
        assert set(dd["contact_id"] for dd in await env.decisions(cid)) == {
            contacts[x] for x in order[:i]
        }
        env.clock.offset = due[z] - datetime.now(UTC) + timedelta(seconds=1)
        await engine.tick()
        assert set(dd["contact_id"] for dd in await env.decisions(cid)) == {
            contacts[x] for x in order[: i + 1]
        }
    await engine.tick()
    assert (await get(env, cid)).state == pb.CAMPAIGN_STATE_COMPLETED


async def test_throttle_pause_resume_and_cancel(env: CampaignEnv) -> None:
    for _ in range(7):
        await env.contact(["vip"])
    await env.settle()
    cid = await create(env, throttle=2)
    await schedule(env, cid, epb.CampaignSchedule(now=True))
    engine = env.engine()
    await engine.tick()
    rows = await env.recipients(cid)
    dues = sorted(r["due_at"] for r in rows.values())
    assert [b - a_ for a_, b in itertools.pairwise(dues)] == [timedelta(seconds=30)] * 6

    async def sent() -> int:
        return len(await env.decisions(cid))

    env.clock.offset = timedelta(minutes=10)  # all due: still two a minute
    await engine.tick()
    await engine.tick()
    assert await sent() == 2
    await env.stub.PauseCampaign(pb.PauseCampaignRequest(campaign_id=cid))
    env.clock.offset = timedelta(minutes=12)
    await engine.tick()
    assert await sent() == 2  # paused: nothing taken
    await env.stub.ResumeCampaign(pb.ResumeCampaignRequest(campaign_id=cid))
    await engine.tick()
    assert await sent() == 4
    await env.stub.CancelCampaign(pb.CancelCampaignRequest(campaign_id=cid))
    env.clock.offset = timedelta(minutes=14)
    await engine.tick()
    await engine.tick()
    assert await sent() == 4  # the rest dropped
    outcomes = Counter(r["outcome"] for r in (await env.recipients(cid)).values())
    assert outcomes == {"sent": 4, "cancelled": 3}
    assert (await get(env, cid)).state == pb.CAMPAIGN_STATE_CANCELLED
    assert (
        await env.store.pool.fetchval(
            f"SELECT count(*) FROM {TABLE} WHERE campaign_id = $1::uuid AND done_at IS NULL", cid
        )
        == 0
    )


async def _listed(env: CampaignEnv, cid: str, outcome: str = "") -> list[pb.CampaignRecipient]:
    """Every recipient ListCampaignRecipients lists, two a page."""
    out, token = [], ""
    while True:
        page = await env.stub.ListCampaignRecipients(
            pb.ListCampaignRecipientsRequest(
                campaign_id=cid, outcome=outcome, page_size=2, page_token=token
            )
        )
        out.extend(page.recipients)
        if not (token := page.next_page_token):
            return out


async def test_the_recipients_listed_are_the_frozen_audience_and_how_each_ended(
    env: CampaignEnv,
) -> None:
    cid = await create(env, holdout=5000)
    members = [await env.contact(["vip"]) for _ in range(5)]
    late = await env.contact(["vip"], subscribed=False)
    await env.settle()
    await schedule(env, cid, epb.CampaignSchedule(now=True))
    engine = env.engine()
    await engine.tick()  # started
    pending = await _listed(env, cid, "pending")
    assert sorted(r.contact_id for r in pending) == sorted([*members, late])
    for r in pending:
        assert r.variant == a.variant_of(cid, r.contact_id, VARIANTS, 5000)
        assert r.outcome == "pending" and not r.HasField("done_time")
    await engine.tick()  # decided
    done = {r.contact_id: r for r in await _listed(env, cid)}
    expected = {
        c: "held_out" if a.variant_of(cid, c, VARIANTS, 5000) == a.HOLDOUT else "sent"
        for c in members
    }
    expected[late] = "held_out" if done[late].variant == a.HOLDOUT else "skipped"
    assert {c: r.outcome for c, r in done.items()} == expected
    assert all(r.HasField("done_time") for r in done.values())
    assert await _listed(env, cid, "pending") == []
    held = [c for c, o in expected.items() if o == "held_out"]
    assert sorted(r.contact_id for r in await _listed(env, cid, "held_out")) == sorted(held)
    # refusals: a clear error, nothing listed
    bad = [
        (pb.ListCampaignRecipientsRequest(campaign_id="nope"), "INVALID_CAMPAIGN_ID"),
        (pb.ListCampaignRecipientsRequest(campaign_id=cid, outcome="won"), "INVALID_OUTCOME"),
        (
            pb.ListCampaignRecipientsRequest(campaign_id=cid, page_token="forged"),
            "INVALID_PAGE_TOKEN",
        ),
    ]
    for request, reason in bad:
        await expect_error(
            env.stub.ListCampaignRecipients(request), grpc.StatusCode.INVALID_ARGUMENT, reason
        )
    unknown = pb.ListCampaignRecipientsRequest(campaign_id="0d9b1b8e-5b0f-4e5c-8d7b-2a4c6e8f0a1b")
    await expect_error(
        env.stub.ListCampaignRecipients(unknown), grpc.StatusCode.NOT_FOUND, "CAMPAIGN_NOT_FOUND"
    )
