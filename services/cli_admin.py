"""`crm projections …`: every registered service's projections through the Admin API of its
project role (protos/crm/admin/v1/admin.proto), no database credentials needed; where each role
listens and which one runs a projection: cli_admin_targets.py. Exit codes as cli_calls.py says;
`status` also exits 1 when a projection has no leader, parked events or a failed or interrupted
rebuild."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Annotated, Any

import grpc
import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.cli_admin_targets import Admin, Service, Survey, admin_targets, locate, survey
from services.cli_calls import FOUND_NOTHING, Json, Token, as_json, call_failed, dial, metadata
from services.cli_support import OK, USAGE, emit, err, print_wide

app = typer.Typer(help="Projections: status, rebuilds.", no_args_is_help=True)

STATES = {
    pb.Projection.STATE_RUNNING: "running",
    pb.Projection.STATE_NO_LEADER: "[red]no leader[/red]",
    pb.Projection.STATE_REBUILDING: "[yellow]rebuilding[/yellow]",
}
REBUILD_STATES = {v: k.removeprefix("STATE_").lower() for k, v in pb.Rebuild.State.items()}
PHASES = {
    v: k.removeprefix("PHASE_").lower().replace("_", " ") for k, v in pb.Rebuild.Phase.items()
}


def unhealthy(p: pb.Projection) -> bool:
    failed = p.HasField("last_rebuild") and p.last_rebuild.state in (
        pb.Rebuild.STATE_FAILED,
        pb.Rebuild.STATE_INTERRUPTED,
    )
    return p.state == pb.Projection.STATE_NO_LEADER or p.parked_count > 0 or failed


def status_table(found: Survey) -> Table:
    table = Table(title="projections", title_justify="left")
    for col in ("service", "projection", "kind", "state", "checkpoint", "lag", "lag s"):
        table.add_column(col, justify="right" if col.startswith(("checkpoint", "lag")) else "left")
    for col in ("leader", "parked", "last rebuild"):
        table.add_column(col)
    for service, (_, answer) in found.answers.items():
        for p in answer.projections:
            leader = f"{p.leader.host or 'backend'}:{p.leader.pid or p.leader.backend_pid}"
            rebuild = ""
            if p.HasField("last_rebuild"):
                r = p.last_rebuild
                rebuild = f"{REBUILD_STATES[r.state]} {r.start_time.ToDatetime():%Y-%m-%d %H:%M}"
            table.add_row(
                service,
                p.name,
                pb.Projection.Kind.Name(p.kind).removeprefix("KIND_").lower(),
                STATES.get(p.state, "?"),
                str(p.checkpoint_position),
                str(p.lag_events),
                f"{p.lag_seconds:.1f}",
                leader if p.HasField("leader") else "-",
                f"[red]{p.parked_count}[/red]" if p.parked_count else "0",
                rebuild,
            )
    for e in found.errors:
        table.add_row(e["service"], f"[red]{e['code']}: {e['message']}[/red]")
    return table


def status_json(found: Survey) -> dict[str, Any]:
    return {
        "services": [
            {"service": s, "target": t, **as_json(a)} for s, (t, a) in found.answers.items()
        ],
        "errors": found.errors,
    }


def status_code(found: Survey) -> int:
    if found.codes:
        return max(found.codes)
    every = [p for _, a in found.answers.values() for p in a.projections]
    return FOUND_NOTHING if any(unhealthy(p) for p in every) else OK


@app.command("status")
def status(
    service: Service = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="seconds between refreshes")] = 2.0,
    times: Annotated[int, typer.Option(hidden=True, help="with --watch: stop after N")] = 0,
    json_out: Json = False,
    admin: Admin = None,
    token: Token = "",
) -> None:
    """Every projection, reactor and engine of every registered service: checkpoint, lag in
    events and seconds, leader (host:pid), parked events, last rebuild. Exit 0 when all is well,
    1 when one has no leader, parked events or a failed rebuild, 2 when a service cannot be
    asked."""
    targets, md = admin_targets(admin, service), metadata(token)
    if not watch:
        found = asyncio.run(survey(targets, md))
        if json_out:
            emit(status_json(found))
        else:
            print_wide(status_table(found))
        raise typer.Exit(status_code(found))
    shown, code = 0, OK
    try:
        with Live(console=err, auto_refresh=False, transient=False) as live:
            while not times or shown < times:
                found = asyncio.run(survey(targets, md))
                code, shown = status_code(found), shown + 1
                if json_out:
                    emit(status_json(found))
                else:
                    stamp = time.strftime("%H:%M:%S")
                    live.update(Group(status_table(found), f"{stamp}, every {interval:g} s"))
                    live.refresh()
                if not times or shown < times:
                    time.sleep(interval)
    except KeyboardInterrupt:
        pass
    raise typer.Exit(code)


@app.command("rebuild")
def rebuild(
    name: Annotated[str, typer.Argument(help="the projection (crm projections status)")],
    service: Service = None,
    json_out: Json = False,
    admin: Admin = None,
    token: Token = "",
) -> None:
    """Rebuild a read model side by side, with no downtime and no side effects, and follow it
    to the end. The rebuild belongs to the project role: interrupting this command does not
    stop it, and running it again follows it (or resumes it after a crash). Exit 0 when done,
    1 when it failed or was interrupted (or there is no such projection), 2 when the role
    cannot be reached."""
    md = metadata(token)
    code = asyncio.run(_rebuild(name, service, admin, md, json_out))
    raise typer.Exit(code)


async def _rebuild(
    name: str,
    service: str | None,
    flags: Sequence[str] | None,
    md: Sequence[tuple[str, str]],
    json_out: bool,
) -> int:
    where, target = await locate(name, service, flags, md)
    last: pb.Rebuild | None = None
    bar = Progress(
        TextColumn(f"rebuilding {name} ({where})"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[phase]}, {task.fields[applied]} events"),
        TimeElapsedColumn(),
        console=err,
        disable=json_out,
    )
    async with dial(target) as ch:
        stub = pb_grpc.AdminServiceStub(ch)
        try:
            with bar:
                task = bar.add_task(name, total=1.0, phase="starting", applied=0)
                call = stub.RebuildProjection(
                    pb.RebuildProjectionRequest(projection=name), metadata=md
                )
                async for message in call:
                    last = message.rebuild
                    if json_out:
                        emit(as_json(last))
                    phase = PHASES[last.phase]
                    if last.resumed_from_position and phase == "catching up":
                        phase = f"resumed at {last.resumed_from_position}, {phase}"
                    bar.update(
                        task, completed=last.progress, phase=phase, applied=last.applied_events
                    )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNAVAILABLE and last is not None:
                err.print(
                    "[yellow]lost the connection; the rebuild goes on in the role unless it "
                    "stopped: run the command again to follow it, or to resume it[/yellow]"
                )
            call_failed(exc, f"{where} at {target}", json_out)
    if last is None:
        err.print("[red]the role ended the rebuild without a word[/red]")
        return USAGE
    if last.state == pb.Rebuild.STATE_DONE:
        err.print(
            f"[green]rebuilt[/green] {name}: {last.applied_events} events applied"
            + (f" (resumed at {last.resumed_from_position})" if last.resumed_from_position else "")
            + f", live from position {last.position}"
        )
        return OK
    err.print(
        f"[red]rebuild {REBUILD_STATES[last.state]}: {last.error or 'see the role log'}[/red]"
    )
    return FOUND_NOTHING
