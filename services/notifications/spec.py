"""The notifications service, declared once (shared/service.py)."""

from __future__ import annotations

from services.notifications import app
from shared.service import DevRole, ProcessRole, ServiceSpec

# make run: the delivery workers on 50254; emails go to a local SMTP catcher on 1025
# (`.venv/bin/python -m aiosmtpd -n -l 127.0.0.1:1025` prints them), webhooks are signed with
# a development secret; SMS needs SMS_BASE_URL/SMS_ACCOUNT_SID/SMS_AUTH_TOKEN from the caller.
DELIVERY = DevRole(
    50254,
    9472,
    env={
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "1025",
        "MESSAGE_ID_DOMAIN": "crm.localhost",
        "WEBHOOK_SECRET": "whsec_ZGV2LWRlbGl2ZXJ5LXdlYmhvb2stc2VjcmV0LTMyYg==",
    },
)
TO_DELIVERY = {"DELIVERY_URL": f"127.0.0.1:{DELIVERY.grpc_port}"}
# make run: bounce and complaint reports to the intake are signed with this public development
# secret (Standard Webhooks); set INTAKE_SECRET anywhere else.
DEV_INTAKE_SECRET = "whsec_ZGV2LW5vdGlmaWNhdGlvbnMtaW50YWtlLXNlY3JldCE="  # noqa: S105

SPEC = ServiceSpec(
    name="notifications",
    settings=app.NotificationsSettings,
    migrations=app.OWN_MIGRATIONS,
    roles={
        "serve": app.serve,
        "project": app.project,
        "delivery": ProcessRole("services.notifications.delivery"),
    },
    projections=lambda: app.PROJECTIONS,
    dev={
        "serve": DevRole(50054, 9470, env={**TO_DELIVERY, "INTAKE_SECRET": DEV_INTAKE_SECRET}),
        "project": DevRole(50154, 9471, env=TO_DELIVERY),
        "delivery": DELIVERY,
    },
    api=app.NotificationsApi,
)
