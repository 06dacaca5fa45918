"""The notifications service's composition root: the API (serve, stateless) and the templates
read model (project). Delivery, policy and tracking are later slices (README.md)."""

from __future__ import annotations

import asyncio

from crm.notifications.v1 import notifications_pb2_grpc as pb_grpc
from services.notifications.adapters.queries import TemplateQueries
from services.notifications.adapters.readmodel import TemplatesProjection
from services.notifications.api.servicer import SERVICE, NotificationsServicer
from services.notifications.application.templates import TemplateCommands
from shared import runtime
from shared.runtime import Runtime
from shared.settings import Settings

PROJECTIONS = (TemplatesProjection(),)


class NotificationsSettings(Settings):
    # The delivery workers (the `delivery` role, DeliveryService), host:port: make run's by
    # default; compose and Kubernetes name the notifications-delivery service.
    delivery_url: str = "127.0.0.1:50254"


async def connect(settings: Settings) -> Runtime:
    return await runtime.connect(settings, projections=PROJECTIONS)


class NotificationsApi:
    def __init__(self) -> None:
        self.servicer = NotificationsServicer()
        self.services = [
            (
                SERVICE,
                lambda s: pb_grpc.add_NotificationsServiceServicer_to_server(self.servicer, s),
            )
        ]

    async def bind(self, rt: Runtime, settings: Settings) -> None:
        self.servicer.bind(TemplateCommands(rt.store), TemplateQueries(rt.pool))

    async def close(self) -> None:
        return None


async def serve(settings: NotificationsSettings, stop: asyncio.Event) -> None:
    await runtime.serve(settings, stop, NotificationsApi(), connect)


def work(rt: Runtime, settings: NotificationsSettings, stop: asyncio.Event) -> runtime.Work:
    """The templates read model (one leader across replicas)."""
    return runtime.Work(PROJECTIONS)


async def project(settings: NotificationsSettings, stop: asyncio.Event) -> None:
    await runtime.project(settings, stop, connect, work, service="notifications")
