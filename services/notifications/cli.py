"""`crm flows …`: flows (journeys) through the notifications API (the serve role): apply files,
list, show one as YAML."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
import yaml
from google.protobuf import json_format

from crm.notifications.v1 import flow_definition_pb2 as dpb
from crm.notifications.v1 import flows_pb2 as pb
from crm.notifications.v1 import flows_pb2_grpc as pb_grpc
from services.cli_calls import (
    CALL_TIMEOUT,
    Json,
    Token,
    as_json,
    call_failed,
    dial,
    fail_usage,
    metadata,
    serve_target,
)
from services.cli_support import emit
from services.notifications import cli_runs
from services.notifications.cli_runs import GRPC_PORT

app = typer.Typer(help="Flows (journeys): apply, list, show; runs; dry runs.", no_args_is_help=True)
Target = Annotated[
    str | None,
    typer.Option(
        help="notifications gRPC address (env CRM_NOTIFICATIONS_TARGET; default make run's)",
        show_default=False,
    ),
]


def read_definition(path: Path) -> dpb.FlowDefinition:
    """A flow file (YAML or JSON, the protobuf JSON mapping): exit 2 naming what is wrong."""
    try:
        data = yaml.safe_load(path.read_text())
        return json_format.ParseDict(data, dpb.FlowDefinition())
    except OSError as exc:
        fail_usage(f"{path}: {exc.strerror}")
    except (yaml.YAMLError, json_format.ParseError) as exc:
        fail_usage(f"{path}: {exc}")


async def apply_one(
    stub: pb_grpc.FlowsServiceStub, d: dpb.FlowDefinition, md: Any
) -> tuple[str, pb.Flow]:
    """Create the flow, or a new version of it: (what happened, the flow). The request ids
    derive from the file's content (and the version it updates), so a retried apply is answered
    once."""
    content = d.SerializeToString(deterministic=True)

    def request_id(*parts: str) -> str:
        return hashlib.sha256("/".join(parts).encode() + content).hexdigest()[:32]

    try:
        current = await stub.GetFlow(
            pb.GetFlowRequest(key=d.key), metadata=md, timeout=CALL_TIMEOUT
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        made = await stub.CreateFlow(
            pb.CreateFlowRequest(definition=d, request_id=request_id("create")),
            metadata=md,
            timeout=CALL_TIMEOUT,
        )
        return "created", made.flow
    updated = await stub.UpdateFlow(
        pb.UpdateFlowRequest(
            definition=d,
            etag=current.flow.etag,
            request_id=request_id("update", current.flow.flow_id, current.flow.etag),
        ),
        metadata=md,
        timeout=CALL_TIMEOUT,
    )
    same = updated.flow.version == current.flow.latest_version
    return ("unchanged" if same else "updated"), updated.flow


@app.command("apply")
def apply(
    files: Annotated[list[Path], typer.Argument(help="flow files (YAML or JSON)")],
    target: Target = None,
    json_out: Json = False,
    token: Token = "",
) -> None:
    """Save each flow: created when its key is new, else a new version when it changed (runs
    already started finish on their version). Every file is read and parsed before any is sent."""
    definitions = [read_definition(f) for f in files]
    where = serve_target("notifications", target, f"127.0.0.1:{GRPC_PORT}")
    md = metadata(token)

    async def work() -> list[tuple[str, pb.Flow]]:
        async with dial(where) as ch:
            stub = pb_grpc.FlowsServiceStub(ch)
            done = []
            for path, d in zip(files, definitions, strict=True):
                try:
                    done.append(await apply_one(stub, d, md))
                except grpc.aio.AioRpcError as exc:
                    call_failed(exc, f"{path} at {where}", json_out)
            return done

    for what, flow in asyncio.run(work()):
        if json_out:
            emit({"result": what, "flow": as_json(flow)})
        else:
            typer.echo(f"{flow.key}: {what} (version {flow.latest_version})")


@app.command("list")
def list_flows(
    include_archived: Annotated[bool, typer.Option("--archived", help="archived ones too")] = False,
    target: Target = None,
    json_out: Json = False,
    token: Token = "",
) -> None:
    """Every flow: key, state, latest version."""
    where = serve_target("notifications", target, f"127.0.0.1:{GRPC_PORT}")
    md = metadata(token)

    async def work() -> list[pb.Flow]:
        async with dial(where) as ch:
            stub = pb_grpc.FlowsServiceStub(ch)
            request = pb.ListFlowsRequest(page_size=500, include_archived=include_archived)
            found: list[pb.Flow] = []
            try:
                while True:
                    page = await stub.ListFlows(request, metadata=md, timeout=CALL_TIMEOUT)
                    found += page.flows
                    if not page.next_page_token:
                        return found
                    request.page_token = page.next_page_token
            except grpc.aio.AioRpcError as exc:
                call_failed(exc, f"notifications at {where}", json_out)

    for flow in asyncio.run(work()):
        if json_out:
            emit(as_json(flow))
        else:
            state = pb.FlowState.Name(flow.state).removeprefix("FLOW_STATE_").lower()
            typer.echo(
                f"{flow.key}\t{state}\tversion {flow.latest_version}\t{flow.definition.name}"
            )


@app.command("show")
def show(
    key: Annotated[str, typer.Argument(help="the flow's key")],
    version: Annotated[int, typer.Option(help="that version (0: the latest)")] = 0,
    target: Target = None,
    json_out: Json = False,
    token: Token = "",
) -> None:
    """A flow's definition as a file `crm flows apply` takes (YAML; JSON with --json)."""
    where = serve_target("notifications", target, f"127.0.0.1:{GRPC_PORT}")
    md = metadata(token)

    async def work() -> pb.Flow:
        async with dial(where) as ch:
            stub = pb_grpc.FlowsServiceStub(ch)
            try:
                request = pb.GetFlowRequest(key=key, version=version)
                got = await stub.GetFlow(request, metadata=md, timeout=CALL_TIMEOUT)
                return got.flow
            except grpc.aio.AioRpcError as exc:
                call_failed(exc, f"notifications at {where}", json_out)

    flow = asyncio.run(work())
    if json_out:
        emit(as_json(flow))
        return
    definition = json_format.MessageToDict(flow.definition, preserving_proto_field_name=True)
    typer.echo(f"# {flow.key}, version {flow.version} of {flow.latest_version}")
    typer.echo(yaml.safe_dump(definition, sort_keys=False, allow_unicode=True), nl=False)


app.command("runs")(cli_runs.runs)
app.command("dry-run")(cli_runs.dry_run)
