"""The contacts service's composition root: wires store, read model, gRPC and projections."""

from __future__ import annotations

import asyncio

import structlog

from crm.contacts.v1 import consent_pb2_grpc as consent_grpc
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from services.contacts.adapters.consent_readmodel import ConsentProjection
from services.contacts.adapters.keys import MIGRATIONS as KEY_MIGRATIONS
from services.contacts.adapters.keys import DataKeys
from services.contacts.adapters.readmodel import ContactsProjection
from services.contacts.api.consent_servicer import SERVICE as CONSENT
from services.contacts.api.consent_servicer import ConsentServicer
from services.contacts.api.servicer import ContactsServicer
from services.contacts.application.commands import ContactCommands
from services.contacts.application.consent import Clock, ConsentLedgers, utcnow
from services.contacts.application.importer import ContactImporter
from services.contacts.application.queries import ContactQueries
from shared import runtime
from shared.grpckit.audit import PersonalDataAudit
from shared.runtime import Runtime
from shared.settings import Settings

SERVICE = "crm.contacts.v1.ContactsService"
PROJECTIONS = (ContactsProjection(), ConsentProjection())
log = structlog.get_logger(__name__)


async def connect(settings: Settings) -> Runtime:
    """Connect (waiting for the database) and migrate what this service owns."""
    return await runtime.connect(
        settings, migrations=[("contacts", KEY_MIGRATIONS)], projections=PROJECTIONS
    )


class ContactsApi:
    """ContactsService and ConsentService: the serve role's gRPC services."""

    def __init__(self, clock: Clock = utcnow) -> None:
        self.contacts, self.consent, self.clock = ContactsServicer(), ConsentServicer(), clock
        self.services = [
            (SERVICE, lambda s: pb_grpc.add_ContactsServiceServicer_to_server(self.contacts, s)),
            (CONSENT, lambda s: consent_grpc.add_ConsentServiceServicer_to_server(self.consent, s)),
        ]

    async def bind(self, rt: Runtime, settings: Settings) -> None:
        keys = DataKeys(rt.pool)
        commands = ContactCommands(rt.store, keys)
        importer = ContactImporter(rt.store, keys, commands)
        audit = PersonalDataAudit(rt.store)  # reads of personal data, recorded
        self.contacts.bind(commands, ContactQueries(rt.pool), importer, audit)
        self.consent.bind(ConsentLedgers(rt.store, rt.pool, clock=self.clock), audit)

    async def close(self) -> None:
        pass


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    await runtime.serve(settings, stop, ContactsApi(), connect)


def work(rt: Runtime, settings: Settings, stop: asyncio.Event) -> runtime.Work:
    """The project role: the contacts and consent read models."""
    return runtime.Work(PROJECTIONS)


async def project(settings: Settings, stop: asyncio.Event) -> None:
    await runtime.project(settings, stop, connect, work, service="contacts")
