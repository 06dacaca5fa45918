"""The segmentation service's composition root: the API (serve) and the membership engine,
the segments read model and the timers (project)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import Field

from crm.segmentation.v1 import segmentation_pb2_grpc as pb_grpc
from services.segmentation.adapters.contacts_client import GrpcContactVersions
from services.segmentation.adapters.engine import MembershipEngine
from services.segmentation.adapters.facts_history import FactsHistory
from services.segmentation.adapters.facts_queries import FactsQueries
from services.segmentation.adapters.queries import SegmentQueries
from services.segmentation.adapters.readmodel import SegmentsProjection
from services.segmentation.adapters.rfm import RfmRescoreScheduler
from services.segmentation.adapters.timers import MembershipTimers
from services.segmentation.api.servicer import SERVICE, SegmentationServicer
from services.segmentation.application.insight import Insight
from services.segmentation.application.segments import SegmentCommands
from shared import runtime
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit.audit import PersonalDataAudit
from shared.grpckit.client import ClientTls, service_token
from shared.runtime import Runtime
from shared.settings import Settings

PROJECTIONS = (SegmentsProjection(),)


class SegmentationSettings(Settings):
    contacts_target: str = "127.0.0.1:50051"  # the contacts service's gRPC address
    timer_poll_seconds: float = 0.2  # how often due relative-time timers are looked for
    # RFM is re-scored for every customer once per slot of this length (adapters/rfm.py)
    rfm_rescore_seconds: float = Field(default=3600.0, gt=0)


async def connect(settings: Settings) -> Runtime:
    return await runtime.connect(settings, projections=PROJECTIONS)


class SegmentationApi:
    def __init__(self) -> None:
        self.servicer = SegmentationServicer()
        self.contacts: GrpcContactVersions | None = None
        self.services = [
            (SERVICE, lambda s: pb_grpc.add_SegmentationServiceServicer_to_server(self.servicer, s))
        ]

    async def bind(self, rt: Runtime, settings: Settings) -> None:
        assert isinstance(settings, SegmentationSettings)
        queries = SegmentQueries(rt.pool)
        # Explanations as of a past instant rebuild the facts of then (personal ones from contacts).
        self.contacts = GrpcContactVersions(
            settings.contacts_target,
            service_token(settings, "the contacts API"),
            ClientTls.of(settings),
        )
        past = FactsHistory(rt.pool, rt.store, self.contacts, MembershipEngine.schema)
        insight = Insight(rt.store, FactsQueries(rt.pool), past, queries)
        audit = PersonalDataAudit(rt.store)  # ExplainMembership shows personal facts
        self.servicer.bind(SegmentCommands(rt.store, queries), queries, insight, audit)

    async def close(self) -> None:
        if self.contacts is not None:
            await self.contacts.close()


async def serve(settings: SegmentationSettings, stop: asyncio.Event) -> None:
    await runtime.serve(settings, stop, SegmentationApi(), connect)


def work(rt: Runtime, settings: SegmentationSettings, stop: asyncio.Event) -> runtime.Work:
    """The membership engine (one leader across replicas), the segments read model and the
    timers (safe on every replica)."""
    if not isinstance(rt.store, PostgresEventStore):
        raise SystemExit("segmentation's engine appends in its own transaction: PostgreSQL only")
    contacts = GrpcContactVersions(
        settings.contacts_target,
        service_token(settings, "the contacts API"),
        ClientTls.of(settings),
    )
    engine = MembershipEngine(rt.store, contacts)
    timers = MembershipTimers(rt.store, engine, settings.timer_poll_seconds)
    rescores = RfmRescoreScheduler(rt.store, timedelta(seconds=settings.rfm_rescore_seconds))
    return runtime.Work(
        (*PROJECTIONS, engine),
        {
            "membership-timers": lambda: timers.run(stop),
            "rfm-rescore-scheduler": lambda: rescores.run(stop),
        },
        close=contacts.close,
    )


async def project(settings: SegmentationSettings, stop: asyncio.Event) -> None:
    await runtime.project(settings, stop, connect, work, service="segmentation")
