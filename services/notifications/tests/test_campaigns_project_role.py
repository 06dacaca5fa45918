"""Campaigns sent by the project role as `python -m services.notifications project` runs it:
its campaign engine (one leader) starts a campaign scheduled through the API, its dispatcher
hands the members' messages to the delivery workers (an in-process DeliveryService), and the
campaign completes; a rebuild of the campaigns read model equals the live one."""

from __future__ import annotations

import pytest

from crm.notifications.v1 import campaigns_pb2 as pb
from crm.notifications.v1 import events_pb2 as epb
from services.notifications import spec
from services.notifications.adapters.campaigns_readmodel import CampaignsProjection
from services.notifications.tests.campaign_env import campaign_env
from services.notifications.tests.test_project_role import Workers, _eventually
from services.notifications.tests.test_project_role import workers as workers  # the fixture
from shared.testing import readmodels
from shared.testing.service_env import projecting

pytestmark = pytest.mark.timeout(180)


async def test_the_project_role_sends_a_campaign(dsn: str, workers: tuple[Workers, str]) -> None:
    recorder, target = workers
    async with campaign_env(dsn) as env:
        await env.template("sale")
        await env.segment("vip", "vip")
        members = {await env.contact(["vip"]) for _ in range(3)}
        await env.contact(["other"])
        await env.settle()
        made = await env.create(
            name="Sale",
            include_segments=["vip"],
            variants=[epb.CampaignVariant(name="a", template_key="sale")],
        )
        cid = made.campaign_id
        await env.stub.ScheduleCampaign(
            pb.ScheduleCampaignRequest(campaign_id=cid, schedule=epb.CampaignSchedule(now=True))
        )
        settings = {
            "contacts_target": env.settings.contacts_target,
            "orders_target": env.settings.orders_target,
            "segmentation_target": env.settings.segmentation_target,
            "delivery_url": target,
            "dispatch_poll_seconds": 0.05,
        }
        async with projecting(spec.SPEC, dsn, settings=settings):

            async def completed() -> bool:
                got = await env.stub.GetCampaign(pb.GetCampaignRequest(campaign_id=cid))
                return got.campaign.state == pb.CAMPAIGN_STATE_COMPLETED

            async def delivered() -> bool:
                return len(recorder.messages) >= len(members)

            await _eventually(completed, "CampaignCompleted")
            await _eventually(delivered, "the members' messages delivered")
        decided = {d["contact_id"] for d in await env.decisions(cid)}
        assert decided == members and len(recorder.messages) == len(members)
        got = (await env.stub.GetCampaign(pb.GetCampaignRequest(campaign_id=cid))).campaign
        assert (got.audience_size, got.tally.sent) == (3, 3)
        await env.settle()
        head = await env.store.head_position()
        fresh = await readmodels.fresh(env.store, CampaignsProjection(), head)
        live = await readmodels.snapshot(env.store.pool, CampaignsProjection.schema)
        assert fresh == live
