"""`crm segments …`: operator commands for the segmentation service, through its own API (the
serve role): a segment's members, now or as of an instant."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Annotated

import grpc
import typer

from crm.segmentation.v1 import segmentation_pb2 as pb
from crm.segmentation.v1 import segmentation_pb2_grpc as pb_grpc
from services.cli_calls import (
    CALL_TIMEOUT,
    FOUND_NOTHING,
    Json,
    Token,
    call_failed,
    dial,
    metadata,
    parse_time,
    serve_target,
)
from services.cli_support import emit, err

GRPC_PORT = 50053  # the segmentation serve role under make run (spec.py declares it with this)
app = typer.Typer(help="Segments: members now or as of an instant.", no_args_is_help=True)


async def segment_id(
    stub: pb_grpc.SegmentationServiceStub, ref: str, md: Sequence[tuple[str, str]]
) -> str | None:
    """A segment id given its id or its key (archived segments included)."""
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    request = pb.ListSegmentsRequest(page_size=1000, include_archived=True)
    while True:
        page = await stub.ListSegments(request, metadata=md, timeout=CALL_TIMEOUT)
        for s in page.segments:
            if s.key == ref:
                return str(s.segment_id)
        if not page.next_page_token:
            return None
        request.page_token = page.next_page_token


@app.command("members")
def members(
    segment: Annotated[str, typer.Argument(help="the segment's key or id")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="members then (RFC 3339 with offset)")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="segmentation gRPC address (env CRM_SEGMENTATION_TARGET; default make run's)",
            show_default=False,
        ),
    ] = None,
    json_out: Json = False,
    token: Token = "",
) -> None:
    """The segment's members (contact ids, one per line on stdout), now or at --as-of, from
    its membership events. Exit 1 when there is no such segment."""
    at = parse_time(as_of, "--as-of")
    where = serve_target("segmentation", target, f"127.0.0.1:{GRPC_PORT}")
    md = metadata(token)

    async def work() -> tuple[str, list[str]] | None:
        async with dial(where) as ch:
            stub = pb_grpc.SegmentationServiceStub(ch)
            try:
                found = await segment_id(stub, segment, md)
                if found is None:
                    return None
                request = pb.ListSegmentMembersRequest(segment_id=found, as_of=at, page_size=1000)
                ids: list[str] = []
                while True:
                    page = await stub.ListSegmentMembers(request, metadata=md, timeout=CALL_TIMEOUT)
                    ids += page.contact_ids
                    if not page.next_page_token:
                        return found, ids
                    request.page_token = page.next_page_token
            except grpc.aio.AioRpcError as exc:
                call_failed(exc, f"segmentation at {where}", json_out)

    answer = asyncio.run(work())
    if answer is None:
        if json_out:
            emit({"error": {"code": "NOT_FOUND", "reason": "SEGMENT_NOT_FOUND", "where": where}})
        err.print(f"[red]no segment {segment!r}[/red]")
        raise typer.Exit(FOUND_NOTHING)
    found, ids = answer
    if json_out:
        emit({"segment_id": found, "as_of": as_of or "", "contact_ids": ids})
    else:
        out = typer.get_text_stream("stdout")
        for contact_id in ids:
            out.write(contact_id + "\n")
        err.print(f"{len(ids)} members of {segment}" + (f" as of {as_of}" if as_of else ""))
    raise typer.Exit(0)
