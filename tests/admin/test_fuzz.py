"""Every RPC of the Admin API, with requests generated from its protobuf descriptor
(shared/testing/fuzz.py), over a real socket against a real project role: each answer is OK or
an error its canvas (shared/admin/README.md) documents, never INTERNAL or UNKNOWN, with one
ErrorInfo of domain admin.crm, and nothing appends an event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.contacts.spec import SPEC as CONTACTS
from shared.eventstore.postgres import PostgresEventStore
from shared.testing import fuzz
from shared.testing.service_env import projecting
from tests.admin.flaky import append, role
from tests.admin.test_parked import until_parked

pytestmark = pytest.mark.timeout(600)

DOMAIN = "admin.crm"
CANVAS = fuzz.Canvas.parse(Path(__file__).parents[2] / "shared" / "admin" / "README.md")
METHODS = fuzz.methods(pb.DESCRIPTOR.services_by_name["AdminService"])


class Env:
    def __init__(self, stub: pb_grpc.AdminServiceStub, store: PostgresEventStore) -> None:
        self.stub, self.store = stub, store

    async def event_count(self) -> int:
        return int(await self.store.pool.fetchval("SELECT count(*) FROM eventstore.events"))


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    store = await PostgresEventStore.connect(dsn, max_size=4)
    async with projecting(CONTACTS, dsn, role=role) as flaky:
        yield Env(pb_grpc.AdminServiceStub(flaky.channel), store)
    await store.close()


@pytest.fixture
async def samples(env: Env) -> fuzz.Samples:
    """A projection that exists, parked events, streams and categories that exist."""
    await append(env.store, 1)
    parked = [str(await append(env.store, n, poison=True)) for n in (2, 3)]
    await until_parked(env.stub, 2)
    return {
        "projection": ["flaky"],
        "event_id": parked,
        "stream": ["flaky-1", "flaky-2"],
        "category": ["flaky"],
        "types": ["t.v1.Flaked"],
        "reason": ["fuzzed"],
    }


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@fuzz.SETTINGS
@given(data=st.data())
async def test_every_rpc_answers_as_its_canvas_documents(
    env: Env, samples: fuzz.Samples, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(fuzz.requests(method, samples), label="request")
    await fuzz.assert_answers_as_documented(
        env.stub, method, request, env.event_count, CANVAS, DOMAIN
    )
