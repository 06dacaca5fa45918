"""`crm events read|tail`: the log through any project role's Admin API (the suite has one log,
so every service's answers the same), beside `crm events verify|export`, which read the
database. Events print as stored: one JSON object per event with --json (JSON lines)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Annotated

import grpc
import typer
from rich.markup import escape

from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.cli_admin_targets import Admin, Service, admin_targets
from services.cli_calls import Json, Token, as_json, call_failed, dial, metadata, parse_time
from services.cli_events import app
from services.cli_support import OK, emit, err


def _target(service: str | None, admin: Sequence[str] | None) -> tuple[str, str]:
    """The Admin API to read the log from: --service's, else the first registered service's."""
    where, target = next(iter(admin_targets(admin, service).items()))
    return where, target


def _show(e: pb.Event, json_out: bool) -> None:
    if json_out:
        event = as_json(e)
        event["data"] = json.loads(event.pop("data_json"))
        event["metadata"] = json.loads(event.pop("metadata_json"))
        emit(event)
        return
    at = e.record_time.ToDatetime()
    err.print(
        f"[bold]{escape(e.stream)}[/bold] v{e.version} [dim]@{e.position} {at:%Y-%m-%d %H:%M:%S}"
        f"[/dim] {escape(e.type)}"
    )
    err.print(f"  {escape(e.data_json)}", soft_wrap=True)


@app.command("read")
def read(
    stream: Annotated[str, typer.Argument(help="the stream, e.g. contact-<id>, order-<id>")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="as it stood then (RFC 3339 with offset)")
    ] = None,
    service: Service = None,
    json_out: Json = False,
    admin: Admin = None,
    token: Token = "",
) -> None:
    """A stream's events in version order, as stored; with --as-of, those recorded at or
    before that instant. Exit 1 when there is no such stream."""
    request = pb.ReadStreamRequest(stream=stream, as_of=parse_time(as_of, "--as-of"))
    where, target = _target(service, admin)

    async def work() -> int:
        count = 0
        async with dial(target) as ch:
            try:
                async for chunk in pb_grpc.AdminServiceStub(ch).ReadStream(
                    request, metadata=metadata(token)
                ):
                    for e in chunk.events:
                        _show(e, json_out)
                        count += 1
            except grpc.aio.AioRpcError as exc:
                call_failed(exc, f"{where} at {target}", json_out)
        if not json_out:
            err.print(f"{count} events" + (f" as of {as_of}" if as_of else ""))
        return OK

    raise typer.Exit(asyncio.run(work()))


@app.command("tail")
def tail(
    category: Annotated[
        str, typer.Option(help="only this stream category (contact, order, …)")
    ] = "",
    types: Annotated[
        list[str] | None, typer.Option("--type", help="only this type (repeatable)")
    ] = None,
    since: Annotated[
        int | None, typer.Option(min=0, help="start after this position (default: the end now)")
    ] = None,
    count: Annotated[int, typer.Option(min=0, help="stop after N events (0: until Ctrl-C)")] = 0,
    service: Service = None,
    json_out: Json = False,
    admin: Admin = None,
    token: Token = "",
) -> None:
    """Follow the log as it grows, in position order, until Ctrl-C (or --count events)."""
    request = pb.TailEventsRequest(category=category, types=types or [])
    if since is not None:
        request.after_position = since
    where, target = _target(service, admin)

    async def work() -> int:
        seen = 0
        async with dial(target) as ch:
            call = pb_grpc.AdminServiceStub(ch).TailEvents(request, metadata=metadata(token))
            try:
                async for message in call:
                    for e in message.events:
                        _show(e, json_out)
                        seen += 1
                        if count and seen >= count:
                            call.cancel()
                            return OK
            except grpc.aio.AioRpcError as exc:
                call_failed(exc, f"{where} at {target}", json_out)
        return OK

    try:
        code = asyncio.run(work())
    except KeyboardInterrupt:
        code = OK
    raise typer.Exit(code)
