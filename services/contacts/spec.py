"""The contacts service, declared once (shared/service.py)."""

from __future__ import annotations

import os

from services.contacts import app
from services.contacts.adapters.keys import MIGRATIONS as KEY_MIGRATIONS
from services.contacts.cli import app as cli
from shared.eventstore.audit.checkpoints import DEV_SIGNING_KEY
from shared.service import DevRole, ServiceSpec
from shared.settings import Settings

GRPC_PORT = 50051  # make run; other services reach contacts here


def _project() -> DevRole:
    """make run: the contacts project role is the one that writes signed checkpoints
    (docs/architecture.md §2a), every minute, with the public development key unless
    CHECKPOINT_SIGNING_KEY is set."""
    env = {
        "CHECKPOINT_SIGNING_KEY": os.environ.get("CHECKPOINT_SIGNING_KEY") or DEV_SIGNING_KEY,
        "CHECKPOINT_INTERVAL_SECONDS": os.environ.get("CHECKPOINT_INTERVAL_SECONDS") or "60",
    }
    return DevRole(50151, 9465, env=env)


SPEC = ServiceSpec(
    name="contacts",
    settings=Settings,
    roles={"serve": app.serve, "project": app.project},
    migrations=[("contacts", KEY_MIGRATIONS)],
    projections=lambda: app.PROJECTIONS,
    dev={"serve": DevRole(GRPC_PORT, 9464), "project": _project()},
    cli=cli,
    api=app.ContactsApi,
)
