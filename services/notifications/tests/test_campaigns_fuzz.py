"""Every CampaignsService RPC with requests generated from its descriptor (shared/testing/
fuzz.py), over a real socket against a real PostgreSQL, segmentation served: OK or an error
the canvas documents, one ErrorInfo of domain notifications.crm, and a failed call appends no
event."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from crm.notifications.v1 import campaigns_pb2 as pb
from services.notifications.tests.campaign_env import CampaignEnv
from services.notifications.tests.conftest import DOMAIN
from services.notifications.tests.test_campaigns_api import definition, events
from services.notifications.tests.test_campaigns_api import env as env  # the fixture
from shared.testing import fuzz

pytestmark = pytest.mark.timeout(300)

CANVAS = fuzz.Canvas.parse(Path(__file__).parents[1] / "README.md")
METHODS = fuzz.methods(pb.DESCRIPTOR.services_by_name["CampaignsService"])


@pytest.fixture
async def samples(env: CampaignEnv) -> fuzz.Samples:
    made = await env.stub.CreateCampaign(pb.CreateCampaignRequest(definition=definition()))
    return {
        "campaign_id": [made.campaign.campaign_id],
        "include_segments": ["vip", "missing", "Bad Key"],
        "exclude_segments": ["churned", "vip"],
        "template_key": ["sale-a", "missing-template"],
        "name": ["a", "b", "holdout", "Black Friday"],
        "day": ["2099-11-27", "2001-01-01", "x"],
        "time_of_day": ["09:00", "9am"],
        "fallback_time_zone": ["Europe/Paris", "", "Mars/Base"],
        "etag": ["0", "1"],
    }


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@fuzz.SETTINGS
@given(data=st.data())
async def test_every_rpc_answers_as_its_canvas_documents(
    env: CampaignEnv, samples: fuzz.Samples, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(fuzz.requests(method, samples), label="request")

    async def written() -> int:
        return await events(env)

    await fuzz.assert_answers_as_documented(env.stub, method, request, written, CANVAS, DOMAIN)
