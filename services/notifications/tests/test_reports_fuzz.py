"""Every ReportsService RPC with requests generated from its descriptor (shared/testing/fuzz.py),
over a real socket against a real PostgreSQL: OK or an error the canvas documents, one
ErrorInfo of domain notifications.crm, and a call appends no event (reports only read)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from crm.notifications.v1 import flows_pb2 as fpb
from crm.notifications.v1 import reports_pb2 as pb
from services.notifications.domain import decision as d
from services.notifications.tests.conftest import DOMAIN
from services.notifications.tests.test_flows_api import example
from services.notifications.tests.test_reports_api import CAMPAIGN, TEMPLATE, A, Reports
from services.notifications.tests.test_reports_api import reports as reports  # the fixture
from shared.testing import fuzz

pytestmark = pytest.mark.timeout(300)

CANVAS = fuzz.Canvas.parse(Path(__file__).parents[1] / "README.md")
METHODS = fuzz.methods(pb.DESCRIPTOR.services_by_name["ReportsService"])


@pytest.fixture
async def samples(reports: Reports) -> fuzz.Samples:
    made = await reports.flows.CreateFlow(fpb.CreateFlowRequest(definition=example("win-back")))
    flow_id = made.flow.flow_id
    await reports.message(A, d.Origin(d.FLOW, flow_id=flow_id, step_id="s1"), "sent", "clicked")
    await reports.message(A, d.Origin(d.CAMPAIGN, campaign_id=CAMPAIGN, variant="a"), "sent")
    await reports.message(A, d.Origin(), "sent")
    await reports.served.settle()
    return {
        "flow_id": [flow_id],
        "key": ["win-back", "missing-flow", "Bad Key"],
        "campaign_id": [CAMPAIGN],
        "template_id": [TEMPLATE],
    }


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@fuzz.SETTINGS
@given(data=st.data())
async def test_every_rpc_answers_as_its_canvas_documents(
    reports: Reports, samples: fuzz.Samples, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(fuzz.requests(method, samples), label="request")
    await fuzz.assert_answers_as_documented(
        reports.stub, method, request, reports.served.event_count, CANVAS, DOMAIN
    )
