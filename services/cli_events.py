"""`crm events …`: verify the log (live, with the database; or an export, offline), export a range
of it (through the Admin API, or from a database given with --database-url); read a stream and
follow the log through the Admin API (cli_log.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, BinaryIO

import grpc
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.cli_admin import Admin, Service, admin_targets
from services.cli_audit_calls import api_failed, download_export
from services.cli_calls import Token, dial, metadata
from services.cli_support import (
    OK,
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
from shared.eventstore.audit.export import ExportSummary, export_range
from shared.eventstore.audit.export import export as write_export
from shared.eventstore.audit.offline import verify_export
from shared.eventstore.audit.verify import verify_log

app = typer.Typer(
    help="The event log: read a stream, tail it, export it (Admin API); verify it (database, or"
    " an export offline).",
    no_args_is_help=True,
)

DatabaseUrl = Annotated[str, typer.Option(envvar="DATABASE_URL", help="PostgreSQL to read")]
# Commands that go through the Admin API read a database only when told so on the command line
# (a DATABASE_URL in the environment does not switch them).
ExplicitDatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        show_default=False,
        help="read this PostgreSQL directly instead of the Admin API (e.g. a restored backup)",
    ),
]
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
    service: Service = None,
    admin: Admin = None,
    token: Token = "",
    database_url: ExplicitDatabaseUrl = "",
) -> None:
    """Stream the events in a range of positions to stdout as JSON lines (with their hashes,
    positions, versions, metadata and data as stored), preceded by each stream's head before
    the range, for `crm events verify --file`. A time range is the positions from the first
    event recorded at or after --since to the last recorded at or before --until. Through a
    project role's Admin API with your token (an auditor's will do); with --database-url, from
    that database instead."""
    first_bound, last_bound = parse_bound(since, "--since"), parse_bound(until, "--until")
    if isinstance(first_bound, int) and isinstance(last_bound, int) and first_bound > last_bound:
        fail("--since is after --until", USAGE)
    out = stdout()
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        TextColumn("{task.fields[events]} events"),
        TimeElapsedColumn(),
        console=err,
        disable=as_json,
    ) as bar:
        task = bar.add_task("export", total=None, events=0)

        def advance(first: int, last: int, position: int, events: int) -> None:
            done = max(position - first + 1, 0)
            bar.update(task, total=max(last - first + 1, 1), completed=done, events=events)

        if database_url:
            summary = run(
                _export_from_database(database_url, first_bound, last_bound, out, advance)
            )
        else:
            where, target = next(iter(admin_targets(admin, service).items()))
            request = _export_request(first_bound, last_bound)
            try:
                summary = asyncio.run(
                    _export_from_api(where, target, request, token, as_json, out, advance)
                )
            except KeyboardInterrupt:
                out.flush()
                fail("interrupted: the export on stdout is incomplete (no closing line)")
        out.flush()
        bar.update(task, completed=bar.tasks[0].total or 1)
    if as_json:
        err.print_json(data=summary.to_json())
    else:
        err.print(
            f"exported {summary.events} events at positions {summary.first}..{summary.last}"
            f" (and {summary.heads} stream heads before them)"
        )
    exit_with(OK)


Advance = Callable[[int, int, int, int], None]


def _export_request(
    since: int | datetime | None, until: int | datetime | None
) -> pb.ExportEventsRequest:
    request = pb.ExportEventsRequest()
    for bound, name in ((since, "since"), (until, "until")):
        if isinstance(bound, int):
            setattr(request, f"{name}_position", bound)
        elif isinstance(bound, datetime):
            getattr(request, f"{name}_time").FromDatetime(bound)
    return request


async def _export_from_api(
    where: str,
    target: str,
    request: pb.ExportEventsRequest,
    token: str,
    as_json: bool,
    out: BinaryIO,
    advance: Advance,
) -> ExportSummary:
    async with dial(target) as channel:
        try:
            return await download_export(
                pb_grpc.AdminServiceStub(channel),
                request,
                metadata(token),
                out.write,
                lambda m: advance(m.first_position, m.last_position, m.position, m.exported_events),
            )
        except grpc.aio.AioRpcError as exc:
            out.flush()
            api_failed(exc, f"{where} at {target}", as_json, stdout_is_data=True)


async def _export_from_database(
    url: str,
    since: int | datetime | None,
    until: int | datetime | None,
    out: BinaryIO,
    advance: Advance,
) -> ExportSummary:
    audit = await connect(url)
    try:
        first, last = await export_range(audit, since, until)
        return await write_export(
            audit,
            first,
            last,
            out.write,
            lambda c: advance(c.first, c.last, c.position, c.events),
        )
    finally:
        await audit.close()
