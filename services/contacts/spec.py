"""The contacts service, declared once (shared/service.py)."""

from __future__ import annotations

from services.contacts import app
from services.contacts.adapters.keys import MIGRATIONS as KEY_MIGRATIONS
from services.contacts.cli import app as cli
from shared.service import DevRole, ServiceSpec
from shared.settings import Settings

GRPC_PORT = 50051  # make run; other services reach contacts here

SPEC = ServiceSpec(
    name="contacts",
    settings=Settings,
    roles={"serve": app.serve, "project": app.project},
    migrations=[("contacts", KEY_MIGRATIONS)],
    projections=lambda: app.PROJECTIONS,
    dev={"serve": DevRole(GRPC_PORT, 9464), "project": DevRole(50151, 9465)},
    cli=cli,
    api=app.ContactsApi,
)
