"""`crm parked list|show|retry|skip`: events a projection parked after failing to apply them,
through the Admin API of the project role that runs it (cli_admin_targets.py says where that is).
Exit codes as cli_calls.py says: `retry` exits 1 when the event still fails."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

import grpc
import typer
from rich.markup import escape
from rich.table import Table

from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.cli_admin_targets import Admin, Service, admin_targets, locate
from services.cli_calls import (
    CALL_TIMEOUT,
    Json,
    Token,
    as_json,
    call_failed,
    dial,
    exit_code,
    failure,
    metadata,
)
from services.cli_support import OK, emit, err, print_wide

app = typer.Typer(help="Parked events: list, show, retry, skip.", no_args_is_help=True)

Projection = Annotated[str, typer.Argument(help="the projection that parked it")]
EventId = Annotated[str, typer.Argument(help="the parked event's id")]


@app.command("list")
def list_parked(
    projection: Annotated[str, typer.Option(help="only this projection")] = "",
    every: Annotated[bool, typer.Option("--all", help="skipped (resolved) ones too")] = False,
    service: Service = None,
    json_out: Json = False,
    admin: Admin = None,
    token: Token = "",
) -> None:
    """Parked events of every service (or one), by projection then position."""
    md = metadata(token)

    async def work() -> int:
        targets = admin_targets(admin, service)
        if projection:
            where, target = await locate(projection, service, admin, md)
            targets = {where: target}
        rows: list[tuple[str, pb.ParkedEvent]] = []
        codes: list[int] = []
        for name, target in targets.items():
            async with dial(target) as ch:
                stub = pb_grpc.AdminServiceStub(ch)
                request = pb.ListParkedEventsRequest(
                    projection=projection, include_resolved=every, page_size=1000
                )
                try:
                    while True:
                        page = await stub.ListParkedEvents(
                            request, metadata=md, timeout=CALL_TIMEOUT
                        )
                        rows += [(name, p) for p in page.parked_events]
                        if not page.next_page_token:
                            break
                        request.page_token = page.next_page_token
                except grpc.aio.AioRpcError as exc:
                    problem = failure(exc, f"{name} at {target}")
                    err.print(f"[red]{problem['code']}: {escape(problem['message'])}[/red]")
                    codes.append(exit_code(exc.code()))
        if json_out:
            emit({"parked_events": [{"service": s, **as_json(p)} for s, p in rows]})
        elif rows:
            print_wide(_table(rows))
        else:
            err.print("no parked events")
        return max(codes, default=OK)

    raise typer.Exit(asyncio.run(work()))


def _table(rows: Sequence[tuple[str, pb.ParkedEvent]]) -> Table:
    table = Table(title="parked events", title_justify="left")
    for col in ("service", "projection", "event id", "position", "type", "attempts", "parked"):
        table.add_column(col)
    table.add_column("error", overflow="fold", max_width=60)
    table.add_column("resolved")
    for service, p in rows:
        resolved = f"{p.resolved_by}: {p.resolution}" if p.HasField("resolve_time") else ""
        table.add_row(
            service,
            p.projection,
            p.event_id,
            str(p.position),
            p.type,
            str(p.attempts),
            f"{p.park_time.ToDatetime():%Y-%m-%d %H:%M:%S}",
            escape(p.error[:300]),
            escape(resolved),
        )
    return table


async def _call(
    name: str,
    service: str | None,
    admin: Sequence[str] | None,
    md: Sequence[tuple[str, str]],
    json_out: bool,
    method: str,
    request: Any,
) -> Any:
    """Call ``method`` of the Admin API of the role that runs projection ``name``."""
    where, target = await locate(name, service, admin, md)
    async with dial(target) as ch:
        stub = pb_grpc.AdminServiceStub(ch)
        try:
            return await getattr(stub, method)(request, metadata=md, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            call_failed(exc, f"{where} at {target}", json_out)


@app.command("show")
def show(
    projection: Projection,
    event_id: EventId,
    service: Service = None,
    json_out: Json = False,
    admin: Admin = None,
    token: Token = "",
) -> None:
    """A parked event: its error, attempts, and the event as stored."""
    request = pb.GetParkedEventRequest(projection=projection, event_id=event_id)
    md = metadata(token)
    answer = asyncio.run(_call(projection, service, admin, md, json_out, "GetParkedEvent", request))
    p = answer.parked_event
    if json_out:
        emit(as_json(p))
        raise typer.Exit(OK)
    err.print(f"[bold]{p.projection}[/bold] parked {p.event_id} at position {p.position}")
    err.print(f"  {p.type} in {p.stream} (version {p.event.version}), {p.attempts} attempts")
    err.print(f"  parked {p.park_time.ToDatetime():%Y-%m-%d %H:%M:%S} UTC")
    if p.HasField("resolve_time"):
        err.print(f"  skipped by {escape(p.resolved_by)}: {escape(p.resolution)}")
    err.print(f"[red]error:[/red] {escape(p.error)}")
    err.print("data:")
    err.print_json(p.event.data_json)
    err.print("metadata:")
    err.print_json(p.event.metadata_json)
    raise typer.Exit(OK)


@app.command("retry")
def retry(
    projection: Projection,
    event_id: EventId,
    service: Service = None,
    json_out: Json = False,
    admin: Admin = None,
    token: Token = "",
) -> None:
    """Apply a parked event again through its projection (after fixing its cause). Exit 0 when
    it applied (it is no longer parked), 1 when it still fails (its error is kept)."""
    request = pb.RetryParkedEventRequest(projection=projection, event_id=event_id)
    md = metadata(token)
    answer = asyncio.run(
        _call(projection, service, admin, md, json_out, "RetryParkedEvent", request)
    )
    if json_out:
        emit({"applied": True, "parked_event": as_json(answer.parked_event)})
    else:
        err.print(f"[green]applied[/green] {event_id} through {projection}; no longer parked")
    raise typer.Exit(OK)


@app.command("skip")
def skip(
    projection: Projection,
    event_id: EventId,
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (kept with the event)")],
    service: Service = None,
    json_out: Json = False,
    admin: Admin = None,
    token: Token = "",
) -> None:
    """Resolve a parked event without applying it, recording who (your token's name) and why."""
    request = pb.SkipParkedEventRequest(projection=projection, event_id=event_id, reason=reason)
    md = metadata(token)
    answer = asyncio.run(
        _call(projection, service, admin, md, json_out, "SkipParkedEvent", request)
    )
    p = answer.parked_event
    if json_out:
        emit(as_json(p))
    else:
        err.print(f"skipped {event_id} of {projection} ({escape(p.resolved_by)}: {escape(reason)})")
    raise typer.Exit(OK)
