"""The `crm` command for operators and auditors. Each registered service mounts its own
sub-commands (its spec's ``cli``) as `crm <service> …`."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
from rich.console import Console

from services.registry import SERVICES

app = typer.Typer(help="CRM suite operations.", no_args_is_help=True)
for spec in SERVICES:
    if spec.cli is not None:
        app.add_typer(spec.cli, name=spec.name)
events = typer.Typer(help="The event log: verify its hash chains.", no_args_is_help=True)
app.add_typer(events, name="events")
console = Console(stderr=True)


@events.command("verify")
def verify(
    stream: Annotated[str | None, typer.Option(help="one stream; default: the whole log")] = None,
    database_url: Annotated[str, typer.Option(envvar="DATABASE_URL")] = "",
) -> None:
    """Recompute every per-stream hash chain; exit 1 if any event was altered."""
    from shared.eventstore.postgres import PostgresEventStore

    async def run() -> int:
        store = await PostgresEventStore.connect(database_url or os.environ["DATABASE_URL"])
        try:
            report = await store.verify(stream)
        finally:
            await store.close()
        console.print(f"{report.events} events in {report.streams} streams checked")
        for s, v in report.broken:
            console.print(f"[red]altered: {s} version {v}[/red]")
        return 0 if report.ok else 1

    raise typer.Exit(asyncio.run(run()))
