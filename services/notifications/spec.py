"""The notifications service, declared once (shared/service.py)."""

from __future__ import annotations

from services.notifications import app
from shared.service import DevRole, ServiceSpec

SPEC = ServiceSpec(
    name="notifications",
    settings=app.NotificationsSettings,
    migrations=app.OWN_MIGRATIONS,
    roles={"serve": app.serve, "project": app.project},
    projections=lambda: app.PROJECTIONS,
    dev={"serve": DevRole(50054, 9470), "project": DevRole(50154, 9471)},
    api=app.NotificationsApi,
)
