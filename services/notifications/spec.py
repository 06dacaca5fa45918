"""The notifications service, declared once (shared/service.py)."""

from __future__ import annotations

from services.notifications import app
from services.notifications.cli import GRPC_PORT
from services.notifications.cli import app as cli
from services.notifications.cli_reports import app as reports_cli
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
# make run: bounce and complaint reports to the intake are signed with this public development
# secret (Standard Webhooks); set INTAKE_SECRET anywhere else.
DEV_INTAKE_SECRET = "whsec_ZGV2LW5vdGlmaWNhdGlvbnMtaW50YWtlLXNlY3JldCE="  # noqa: S105
TO_DELIVERY = {"DELIVERY_URL": f"127.0.0.1:{DELIVERY.grpc_port}"}
# make run: the serve role's HTTP endpoints (tracking: opens, clicks, unsubscribe) on 8081, and
# the links of emails pointing there, signed with a development secret.
HTTP_PORT = 8081
TRACKING = {
    "TRACKING_BASE_URL": f"http://127.0.0.1:{HTTP_PORT}",
    "TRACKING_SECRET": "dev-tracking-secret",  # development only: public
    "UNSUBSCRIBE_MAILTO": "unsubscribe@crm.localhost",
}
SERVE = DevRole(
    GRPC_PORT,
    9470,
    env={
        **TO_DELIVERY,
        **TRACKING,
        "HTTP_PORT": str(HTTP_PORT),
        "INTAKE_SECRET": DEV_INTAKE_SECRET,
    },
    http=f"tracking: http://127.0.0.1:{HTTP_PORT}/o|c|u/<token>, intake: /intake/…",
)

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
        "serve": SERVE,
        "project": DevRole(50154, 9471, env={**TO_DELIVERY, **TRACKING}),
        "delivery": DELIVERY,
    },
    api=app.NotificationsApi,
    cli=cli,
    cli_name="flows",
    more_cli={"reports": reports_cli},
)
