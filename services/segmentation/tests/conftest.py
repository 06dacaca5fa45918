"""Segmentation served from its spec on a real PostgreSQL, the contacts service for real beside
it (the engine reads personal facts through contacts' gRPC API), the membership engine running
with a clock the test can move, and its timers fired on demand."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from google.protobuf import json_format

from crm.contacts.v1 import contacts_pb2_grpc as cpb_grpc
from crm.orders.v1 import events_pb2 as opb
from crm.segmentation.v1 import segmentation_pb2_grpc as pb_grpc
from services.contacts import spec as contacts
from services.segmentation import spec as segmentation
from services.segmentation.adapters.contacts_client import GrpcContactVersions
from services.segmentation.adapters.engine import MembershipEngine
from services.segmentation.adapters.timers import MembershipTimers
from shared.domain.timestamps import timestamp_text
from shared.eventstore import NewEvent, StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.testing import tokens
from shared.testing.clock import MovableClock
from shared.testing.service_env import Served, serving


@dataclass
class Env:
    stub: pb_grpc.SegmentationServiceStub
    contacts: cpb_grpc.ContactsServiceStub
    store: PostgresEventStore
    served: Served
    timers: MembershipTimers
    clock: MovableClock
    contacts_target: str  # the contacts service's gRPC address

    async def settle(self) -> None:
        await self.served.settle()

    async def order(self, contact_id: str, placed: datetime, total: int = 1000) -> str:
        """An OrderPlaced as the orders service publishes it (its proto, nothing else)."""
        order_id = str(uuid.uuid4())
        message = opb.OrderPlaced(
            order_id=order_id,
            contact_id=contact_id,
            currency="EUR",
            items=[opb.LineItem(sku="TEA-1", name="tea", quantity=1, unit_price=total)],
            subtotal=total,
            total=total,
        )
        data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
        data["place_time"] = timestamp_text(placed)
        event = NewEvent("crm.orders.v1.OrderPlaced", data, {"correlation_id": "c-" + order_id})
        await self.store.append(f"order-{order_id}", [event], StreamState.NO_STREAM)
        return order_id


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[Env]:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    clock = MovableClock()
    async with serving(contacts.SPEC, dsn, store=store, projections=[]) as c:
        directory = GrpcContactVersions(c.target, tokens.SERVICE_TOKEN)
        engine = MembershipEngine(store, directory, clock=clock)
        timers = MembershipTimers(store, engine, 0.05, clock=clock)
        settings = {"contacts_target": c.target}
        async with serving(
            segmentation.SPEC, dsn, store=store, extra=[engine], settings=settings
        ) as s:
            yield Env(
                pb_grpc.SegmentationServiceStub(s.channel),
                cpb_grpc.ContactsServiceStub(c.channel),
                store,
                s,
                timers,
                clock,
                c.target,
            )
        await directory.close()
    await store.close()
