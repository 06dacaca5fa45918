"""The `crm` command for operators and auditors. Each registered service mounts its own
sub-commands (its spec's ``cli``) as `crm <service> …`."""

from __future__ import annotations

import typer

from services import cli_log  # noqa: F401 - adds `crm events read|tail`
from services.cli_admin import app as projections_cli
from services.cli_audit import app as audit_cli
from services.cli_events import app as events_cli
from services.cli_parked import app as parked_cli
from services.registry import SERVICES

app = typer.Typer(help="CRM suite operations.", no_args_is_help=True)
for spec in SERVICES:
    if spec.cli is not None:
        app.add_typer(spec.cli, name=spec.cli_name or spec.name)
    for name, more in spec.more_cli.items():
        app.add_typer(more, name=name)
app.add_typer(events_cli, name="events")
app.add_typer(audit_cli, name="audit")
app.add_typer(projections_cli, name="projections")
app.add_typer(parked_cli, name="parked")
