"""The suite as an operator meets it: every registered service's serve role (no read models
running in it) and project role (run in this process exactly as `python -m services.<name>
project` runs it), each on a real socket, on one real PostgreSQL; the Admin API of each project
role; and the `crm` command against them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import pytest
import structlog
from typer.testing import CliRunner

from crm.admin.v1 import admin_pb2 as apb
from crm.admin.v1 import admin_pb2_grpc as apb_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.orders.v1 import events_pb2 as oepb
from crm.orders.v1 import orders_pb2 as opb
from crm.orders.v1 import orders_pb2_grpc as opb_grpc
from crm.segmentation.v1 import segmentation_pb2 as spb
from crm.segmentation.v1 import segmentation_pb2_grpc as spb_grpc
from services.cli import app
from services.registry import SERVICES
from shared.eventstore.postgres import PostgresEventStore
from shared.logs import configure
from shared.testing import tokens
from shared.testing.service_env import Projecting, Served, projecting, serving

pytestmark = pytest.mark.timeout(180)


@dataclass
class Suite:
    store: PostgresEventStore
    serve: dict[str, Served]  # service name -> its serve role
    project: dict[str, Projecting]  # service name -> its project role
    closing: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def admin(self, service: str) -> apb_grpc.AdminServiceStub:
        return apb_grpc.AdminServiceStub(self.project[service].channel)

    @property
    def contacts(self) -> cpb_grpc.ContactsServiceStub:
        return cpb_grpc.ContactsServiceStub(self.serve["contacts"].channel)

    @property
    def orders(self) -> opb_grpc.OrdersServiceStub:
        return opb_grpc.OrdersServiceStub(self.serve["orders"].channel)

    @property
    def segments(self) -> spb_grpc.SegmentationServiceStub:
        return spb_grpc.SegmentationServiceStub(self.serve["segmentation"].channel)

    def targets(self) -> list[str]:
        """`crm` options naming every role of this suite."""
        out = []
        for name, p in self.project.items():
            out += ["--admin", f"{name}={p.target}"]
        return out

    async def activity(self, n: int = 3, tag: str = "a") -> list[str]:
        """Contacts with an order each, in a segment: events for every projection."""
        await self.segments.CreateSegment(
            spb.CreateSegmentRequest(
                key=f"buyers-{tag}", name="Buyers", rule="orders_count >= 1", request_id=tag
            )
        )
        ids = []
        for i in range(n):
            c = await self.contacts.RegisterContact(
                cpb.RegisterContactRequest(email=f"{tag}{i}@shop.io", request_id=f"{tag}-c{i}")
            )
            ids.append(c.contact.contact_id)
            await self.orders.PlaceOrder(
                opb.PlaceOrderRequest(
                    customer=opb.CustomerRef(contact_id=c.contact.contact_id),
                    currency="EUR",
                    items=[oepb.LineItem(sku="TEA-1", quantity=1, unit_price=500)],
                    request_id=f"{tag}-o{i}",
                )
            )
        return ids

    async def settled(self, timeout: float = 60) -> dict[str, apb.ListProjectionsResponse]:
        """Every projection of every role caught up with the whole log (its own appends too)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            head = await self.store.head_position()
            answers = {
                name: await self.admin(name).ListProjections(apb.ListProjectionsRequest())
                for name in self.project
            }
            behind = [
                p.name
                for a in answers.values()
                for p in a.projections
                if p.checkpoint_position < head or p.lag_events
            ]
            if not behind and await self.store.head_position() == head:
                return answers
            assert asyncio.get_running_loop().time() < deadline, f"behind: {behind}"
            await asyncio.sleep(0.1)


@pytest.fixture(autouse=True)
def logs_to_stderr() -> Iterator[None]:
    """The roles log to this test's stderr, as they do in production, and never into the
    output of a `crm` command run meanwhile (CliRunner swaps sys.stdout and sys.stderr)."""
    configure("INFO", "console", cache=False)
    yield
    structlog.reset_defaults()


@pytest.fixture
async def suite(dsn: str) -> AsyncIterator[Suite]:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    specs = {spec.name: spec for spec in SERVICES}
    async with AsyncExitStack() as stack:
        contacts = await stack.enter_async_context(
            serving(specs["contacts"], dsn, store=store, projections=[])
        )
        near = {"contacts_target": contacts.target}
        serve = {"contacts": contacts}
        for name in ("orders", "segmentation"):
            serve[name] = await stack.enter_async_context(
                serving(specs[name], dsn, store=store, projections=[], settings=near)
            )
        project = {}
        for spec in SERVICES:
            extra = near if "contacts_target" in spec.settings.model_fields else {}
            project[spec.name] = await stack.enter_async_context(
                projecting(spec, dsn, settings=extra)
            )
        suite = Suite(store, serve, project)
        yield suite
        for close in suite.closing:
            await close()
    await store.close()


async def crm(*args: str, role: str = "operator") -> tuple[int, str, str]:
    """Run the `crm` command (in a thread: it runs its own event loop) with the test token of
    ``role`` in CRM_TOKEN; exit code, stdout, stderr."""
    runner = CliRunner()
    env = {"CRM_TOKEN": tokens.TOKENS[role]} if role else {}
    result = await asyncio.to_thread(runner.invoke, app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr
