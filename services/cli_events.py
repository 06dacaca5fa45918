"""`crm events …`: verify the log (live or an export), export a range of it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from services.cli_support import (
    USAGE,
    connect,
    err,
    exit_with,
    fail,
    lines,
    load_checkpoints,
    parse_bound,
    pinned_keys,
    report,
    run,
    stdout,
)
from shared.eventstore.audit.export import export as write_export
from shared.eventstore.audit.offline import verify_export
from shared.eventstore.audit.verify import verify_log

app = typer.Typer(help="The event log: verify it, export it.", no_args_is_help=True)

DatabaseUrl = Annotated[str, typer.Option(envvar="DATABASE_URL", help="PostgreSQL to read")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]
PublicKeys = Annotated[
    list[str] | None,
    typer.Option(
        "--public-key",
        help="a checkpoint signer's public key you trust (base64, PEM, or a file); repeatable",
    ),
]


@app.command("verify")
def verify(
    stream: Annotated[str | None, typer.Option(help="one stream; default: the whole log")] = None,
    against: Annotated[
        Path | None, typer.Option(help="checkpoints.jsonl (crm audit checkpoint) to hold it to")
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="verify this export (crm events export) offline instead")
    ] = None,
    public_key: PublicKeys = None,
    as_json: Json = False,
    database_url: DatabaseUrl = "",
) -> None:
    """Recompute every hash chain (versions, order, content); with --against, prove the log
    still holds exactly what each signed checkpoint committed to. Exit 0 ok, 1 tampering found,
    2 usage or connection error."""
    pinned = pinned_keys(public_key)
    checkpoints = load_checkpoints(against) if against is not None else []
    if file is not None:
        if stream is not None:
            fail("--stream is for the live log; an export is verified whole")
        result = verify_export(lines(file), checkpoints, pinned=pinned)
        exit_with(report(result, as_json, f"export {file}"))

    async def live() -> int:
        audit = await connect(database_url)
        try:
            result = await verify_log(audit, checkpoints, pinned=pinned, stream=stream)
        finally:
            await audit.close()
        return report(result, as_json, "the log" if stream is None else f"stream {stream}")

    exit_with(run(live()))


@app.command("export")
def export(
    since: Annotated[
        str | None, typer.Option(help="first position, or a time (RFC 3339 with offset)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="last position, or a time; default: the end of the log")
    ] = None,
    as_json: Json = False,
    database_url: DatabaseUrl = "",
) -> None:
    """Stream the events in a range of positions to stdout as JSON lines (with their hashes,
    positions, versions, metadata and data as stored), preceded by each stream's head before
    the range, for `crm events verify --file`. A time range is the positions from the first
    event recorded at or after --since to the last recorded at or before --until."""
    first_bound, last_bound = parse_bound(since, "--since"), parse_bound(until, "--until")

    async def work() -> int:
        audit = await connect(database_url)
        try:
            times = [b if isinstance(b, datetime) else None for b in (first_bound, last_bound)]
            first, last = await audit.positions_between(times[0], times[1])
            if isinstance(first_bound, int):
                first = first_bound
            if isinstance(last_bound, int):
                last = min(last_bound, await audit.final_position())
            out = stdout()
            with Progress(
                TextColumn("exporting"),
                BarColumn(),
                TextColumn("{task.fields[events]} events"),
                TimeElapsedColumn(),
                console=err,
                disable=as_json,
            ) as bar:
                task = bar.add_task("export", total=max(last - first + 1, 1), events=0)
                count = 0

                def advance(position: int) -> None:
                    nonlocal count
                    count += 1
                    if count % 500 == 0 or position == last:
                        bar.update(task, completed=position - first + 1, events=count)

                summary = await write_export(audit, first, last, out.write, advance)
                bar.update(task, completed=max(last - first + 1, 1), events=summary.events)
            out.flush()
        finally:
            await audit.close()
        if as_json:
            err.print_json(data=summary.to_json())
        else:
            err.print(
                f"exported {summary.events} events at positions {summary.first}..{summary.last}"
                f" (and {summary.heads} stream heads before them)"
            )
        return 0

    if isinstance(first_bound, int) and isinstance(last_bound, int) and first_bound > last_bound:
        fail("--since is after --until", USAGE)
    exit_with(run(work()))
