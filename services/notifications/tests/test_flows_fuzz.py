"""Every FlowsService RPC with requests generated from its descriptor (shared/testing/fuzz.py),
over a real socket against a real PostgreSQL: OK or an error the canvas documents, one
ErrorInfo of domain notifications.crm, and a failed call appends no event."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from crm.notifications.v1 import flows_pb2 as pb
from services.notifications.tests.conftest import DOMAIN
from services.notifications.tests.test_flows_api import Flows, example
from services.notifications.tests.test_flows_api import flows as flows  # the fixture
from shared.testing import fuzz

pytestmark = pytest.mark.timeout(300)

CANVAS = fuzz.Canvas.parse(Path(__file__).parents[1] / "README.md")
METHODS = fuzz.methods(pb.DESCRIPTOR.services_by_name["FlowsService"])


@pytest.fixture
async def samples(flows: Flows) -> fuzz.Samples:
    made = await flows.stub.CreateFlow(pb.CreateFlowRequest(definition=example("win-back")))
    return {
        "flow_id": [made.flow.flow_id],
        "key": ["win-back", "missing-flow", "Bad Key"],
        "event_type": ["crm.orders.v1.OrderPlaced", "OrderPlaced"],
        "segment": ["vip", ""],
        "id": ["a", "b", "Bad Id"],
        "next": ["a", "b", ""],
        "etag": ["0", "1"],
    }


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@fuzz.SETTINGS
@given(data=st.data())
async def test_every_rpc_answers_as_its_canvas_documents(
    flows: Flows, samples: fuzz.Samples, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(fuzz.requests(method, samples), label="request")
    await fuzz.assert_answers_as_documented(
        flows.stub, method, request, flows.events, CANVAS, DOMAIN
    )
