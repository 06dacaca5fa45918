"""The Admin API calls behind `crm events export` and `crm audit checkpoint` (no database
credentials: a token), kept apart from the commands so the benchmarks run the same code.

Exit codes as for every audit command (cli_support.py): 1 when the server found tampering
(LOG_BEHIND_CHECKPOINT: the log lost its tail), 2 for anything else that failed (a usage,
connection or access error, a backend without checkpoints)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn

import grpc
import typer
from rich.markup import escape

from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.cli_calls import CALL_TIMEOUT, failure
from services.cli_support import TAMPER, USAGE, emit, err
from shared.admin.convert import checkpoint_of
from shared.eventstore.audit.checkpoints import Checkpoint
from shared.eventstore.audit.export import ExportSummary

Metadata = Sequence[tuple[str, str]]
PAGE = 1000  # checkpoints per ListCheckpoints call


def api_failed(
    exc: grpc.aio.AioRpcError, where: str, as_json: bool, *, stdout_is_data: bool = False
) -> NoReturn:
    """Report a failed call (also as JSON with --json: on stdout, or on stderr beside the
    summary when stdout holds the data, an export) and exit 1 or 2."""
    problem = failure(exc, where)
    if as_json and stdout_is_data:
        err.print_json(data={"error": problem})
    elif as_json:
        emit({"error": problem})
    reason = f" ({problem['reason']})" if problem["reason"] else ""
    err.print(f"[red]{escape(problem['code'])}{escape(reason)}: {escape(problem['message'])}[/red]")
    raise typer.Exit(TAMPER if problem["reason"] == "LOG_BEHIND_CHECKPOINT" else USAGE)


async def download_export(
    stub: pb_grpc.AdminServiceStub,
    request: pb.ExportEventsRequest,
    metadata: Metadata,
    write: Callable[[bytes], object],
    progress: Callable[[pb.ExportEventsResponse], object] | None = None,
) -> ExportSummary:
    """ExportEvents, each chunk handed to ``write`` as it comes (the export's JSON lines, as
    `crm events verify --file` reads them); ``progress`` sees every message. Raises
    grpc.aio.AioRpcError (after writing what came before the failure)."""
    last: pb.ExportEventsResponse | None = None
    async for message in stub.ExportEvents(request, metadata=metadata):
        write(message.data)
        if progress is not None:
            progress(message)
        last = message
    if last is None:  # a server always sends the closing line
        return ExportSummary(0, 0, 0, 0)
    return ExportSummary(
        last.first_position, last.last_position, last.exported_heads, last.exported_events
    )


async def list_checkpoints(
    stub: pb_grpc.AdminServiceStub, after: int, metadata: Metadata
) -> list[Checkpoint]:
    """Every signed checkpoint numbered above ``after``, page after page."""
    out: list[Checkpoint] = []
    token = ""
    while True:
        page = await stub.ListCheckpoints(
            pb.ListCheckpointsRequest(after_number=after, page_size=PAGE, page_token=token),
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
        out += [checkpoint_of(c) for c in page.checkpoints]
        token = page.next_page_token
        if not token:
            return out


async def create_checkpoint(
    stub: pb_grpc.AdminServiceStub, metadata: Metadata
) -> tuple[Checkpoint | None, bool]:
    """CreateCheckpoint: the checkpoint signed now (True), or the latest one when the log has
    not moved since (False; None when the log is empty). Signing a large log takes a while:
    no deadline."""
    answer = await stub.CreateCheckpoint(pb.CreateCheckpointRequest(), metadata=metadata)
    made = checkpoint_of(answer.checkpoint) if answer.HasField("checkpoint") else None
    return made, answer.created
