"""`crm flows runs` and `crm flows dry-run`: a contact's (or a flow's) runs, and what a flow
would have done over the recorded history (DryRunFlow: nothing is sent or written)."""

from __future__ import annotations

import asyncio
from datetime import UTC
from pathlib import Path
from typing import Annotated

import grpc
import typer

from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import flows_pb2 as pb
from crm.notifications.v1 import flows_pb2_grpc as pb_grpc
from services.cli_calls import (
    CALL_TIMEOUT,
    Json,
    Token,
    as_json,
    call_failed,
    dial,
    metadata,
    parse_time,
    serve_target,
)
from services.cli_support import emit

GRPC_PORT = 50054  # the notifications serve role under make run (spec.py declares it with this)
DRY_RUN_TIMEOUT = 600.0  # seconds: a dry run reads the whole log


def runs(
    contact: Annotated[str, typer.Option(help="the contact's runs")] = "",
    flow: Annotated[str, typer.Option(help="the flow's runs (its id)")] = "",
    open_only: Annotated[bool, typer.Option("--open", help="only runs not ended")] = False,
    target: Annotated[str | None, typer.Option(help="notifications gRPC address")] = None,
    json_out: Json = False,
    token: Token = "",
) -> None:
    """Runs of a contact or a flow, newest first: where each is, what started it."""
    where = serve_target("notifications", target, f"127.0.0.1:{GRPC_PORT}")
    md = metadata(token)

    async def work() -> list[pb.FlowRun]:
        request = pb.ListFlowRunsRequest(
            contact_id=contact, flow_id=flow, open_only=open_only, page_size=500
        )
        found: list[pb.FlowRun] = []
        async with dial(where) as ch:
            stub = pb_grpc.FlowsServiceStub(ch)
            try:
                while True:
                    page = await stub.ListFlowRuns(request, metadata=md, timeout=CALL_TIMEOUT)
                    found += page.runs
                    if not page.next_page_token:
                        return found
                    request.page_token = page.next_page_token
            except grpc.aio.AioRpcError as exc:
                call_failed(exc, f"notifications at {where}", json_out)

    for r in asyncio.run(work()):
        if json_out:
            emit(as_json(r))
            continue
        state = pb.FlowRunState.Name(r.state).removeprefix("FLOW_RUN_STATE_").lower()
        detail = r.end_reason if r.end_reason else r.waiting_for or ""
        wake = r.wake_time.ToDatetime(UTC).isoformat() if r.HasField("wake_time") else ""
        typer.echo(
            "\t".join(
                [
                    r.start_time.ToDatetime(UTC).isoformat(),
                    r.run_id,
                    r.contact_id,
                    state,
                    r.step,
                    wake,
                    detail,
                    r.trigger_event_type,
                ]
            )
        )


def dry_run(
    key: Annotated[str, typer.Argument(help="the flow's key")],
    start: Annotated[str, typer.Option(help="window start, RFC 3339 (2025-11-28T00:00:00Z)")],
    end: Annotated[str, typer.Option(help="window end, RFC 3339")],
    version: Annotated[int, typer.Option(help="that version (0: the latest)")] = 0,
    draft: Annotated[
        Path | None, typer.Option(help="a flow file to try instead of the saved one")
    ] = None,
    max_steps: Annotated[int, typer.Option(help="steps listed (the counts cover all)")] = 1000,
    target: Annotated[str | None, typer.Option(help="notifications gRPC address")] = None,
    json_out: Json = False,
    token: Token = "",
) -> None:
    """What a flow would have sent over the recorded history between two instants, and why:
    each send step's policy decision as the facts stood. Nothing is sent or written."""
    from services.notifications.cli import read_definition

    where = serve_target("notifications", target, f"127.0.0.1:{GRPC_PORT}")
    request = pb.DryRunFlowRequest(
        key="" if draft else key,
        version=version,
        start_time=parse_time(start, "--start"),
        end_time=parse_time(end, "--end"),
        max_steps=max_steps,
    )
    if draft is not None:
        request.definition.CopyFrom(read_definition(draft))

    async def work() -> pb.DryRunFlowResponse:
        async with dial(where) as ch:
            try:
                return await pb_grpc.FlowsServiceStub(ch).DryRunFlow(
                    request, metadata=metadata(token), timeout=DRY_RUN_TIMEOUT
                )
            except grpc.aio.AioRpcError as exc:
                call_failed(exc, f"notifications at {where}", json_out)

    answer = asyncio.run(work())
    if json_out:
        emit(as_json(answer))
        return
    typer.echo(
        f"{answer.events_read:,} events read; {answer.runs_started:,} runs started,"
        f" {answer.runs_ended:,} ended; {len(answer.steps):,} steps"
        + (" (truncated)" if answer.truncated else "")
    )
    for name, n in sorted(answer.counts.items()):
        typer.echo(f"  {name}: {n:,}")
    for s in answer.steps:
        outcome = epb.Outcome.Name(s.outcome).removeprefix("OUTCOME_") if s.outcome else ""
        typer.echo(
            "\t".join(
                [
                    s.decide_time.ToDatetime(UTC).isoformat(),
                    s.contact_id,
                    s.step,
                    s.effect,
                    s.template_key,
                    outcome,
                    s.reason,
                ]
            )
        )
