"""Every RPC of the segmentation service, with requests generated from its protobuf descriptor
(shared/testing/fuzz.py), over a real socket against a real PostgreSQL: each answer is OK or an
error its canvas documents (never INTERNAL or UNKNOWN), with one ErrorInfo of domain
segmentation.crm, and a failed call appends no segment event."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from crm.segmentation.v1 import segmentation_pb2 as pb
from services.segmentation.tests.conftest import Env
from services.segmentation.tests.helpers import create, register
from shared.testing import fuzz

pytestmark = pytest.mark.timeout(300)

DOMAIN = "segmentation.crm"
CANVAS = fuzz.Canvas.parse(Path(__file__).parents[1] / "README.md")
METHODS = fuzz.methods(pb.DESCRIPTOR.services_by_name["SegmentationService"])


@pytest.fixture
async def samples(env: Env) -> fuzz.Samples:
    """Values that get a call past the first checks: a segment, a contact, rules good and bad."""
    seg = await create(env, "tags CONTAINS 'vip'")
    contact = await register(env, tags=["vip"])
    return {
        "segment_id": [seg.segment_id],
        "contact_id": [contact],
        "key": ["fuzz-key", seg.key, "Bad Key"],
        "name": ["A segment"],
        "rule": [
            "orders_count >= 1",
            "tags CONTAINS 'vip' AND last_order_at > -30d",
            f"in_segment('{seg.key}')",
            "orders_count >",
            "nope = 1",
        ],
        "etag": ["0", "1"],
    }


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@fuzz.SETTINGS
@given(data=st.data())
async def test_every_rpc_answers_as_its_canvas_documents(
    env: Env, samples: fuzz.Samples, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(fuzz.requests(method, samples), label="request")
    await fuzz.assert_answers_as_documented(
        env.stub, method, request, lambda: api_events(env), CANVAS, DOMAIN
    )


async def api_events(env: Env) -> int:
    """The events the API writes (segments and their keys); membership events come from the
    engine in the background, whenever it gets to them."""
    return int(
        await env.store.pool.fetchval(
            "SELECT count(*) FROM eventstore.events"
            " WHERE stream_id LIKE 'segment-%' OR stream_id LIKE 'segmentkey-%'"
        )
    )
