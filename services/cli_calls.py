"""What the `crm` commands that call the suite over gRPC share (cli_support.py has the rest). It
names no service, so a service's own commands (`crm contacts show`) use it too; cli_admin.py
adds where each project role's Admin API listens.

- where a serve role listens: ``--target``, else ``CRM_<SERVICE>_TARGET``, else the port `make
  run` gives it;
- who calls: ``--token`` / ``CRM_TOKEN`` sent as ``authorization: Bearer <token>`` (the
  servers record the token's name with what an operator changes: a skipped parked event, a
  rebuild), and for reads of personal data ``--reason`` / ``CRM_REASON`` as ``x-crm-reason``;
- how: plaintext, or TLS when ``GRPC_TLS_CA_FILE`` (and for mTLS ``GRPC_TLS_CERT_FILE`` /
  ``GRPC_TLS_KEY_FILE``) are set, as for every client of the suite (shared/grpckit/client.py);
- what a failed call means: exit 1 when the server answered that the thing is not there or
  cannot be done (NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED, INTERNAL, …), exit 2
  for a usage or connection error (INVALID_ARGUMENT, UNAVAILABLE, DEADLINE_EXCEEDED,
  UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, …); with ``--json`` the error is also
  one JSON object on stdout;
- messages as JSON: proto field names, integers as numbers, every field present.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, NoReturn

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_status import rpc_status
from rich.markup import escape

from services.cli_support import USAGE, emit, err
from shared.domain.timestamps import timestamp_from_text
from shared.grpckit.client import ClientTls, bearer, open_channel
from shared.grpckit.errors import error_info
from shared.settings import Settings

FOUND_NOTHING = 1  # the server answered: not there, not possible, or a failed check
CALL_TIMEOUT = 30.0  # seconds for a unary call

Token = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="CRM_TOKEN",
        show_default=False,
        help="bearer token, sent as `authorization: Bearer …`",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]

_USAGE_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.OUT_OF_RANGE,
}


def serve_target(service: str, flag: str | None, default: str) -> str:
    """host:port of ``service``'s serve role (its own API): the flag, the environment, or
    ``default`` (`make run`'s)."""
    return flag or os.environ.get(f"CRM_{service.upper()}_TARGET") or default


def metadata(token: str, *, reason: str = "") -> tuple[tuple[str, str], ...]:
    """The metadata of every call: the bearer token (and why, for personal data)."""
    return bearer(token, reason=reason)


def dial(target: str) -> grpc.aio.Channel:
    """A channel to ``target``: TLS as the GRPC_TLS_* settings say, else plaintext."""
    return open_channel(target, ClientTls.of(Settings()))


def as_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        unquote_int64_if_possible=True,
    )
    return out


def exit_code(code: grpc.StatusCode) -> int:
    return USAGE if code in _USAGE_CODES else FOUND_NOTHING


def failure(exc: grpc.aio.AioRpcError, where: str) -> dict[str, Any]:
    """What a failed call says: its code, ErrorInfo reason and message, and where it went."""
    status = rpc_status.from_call(exc)
    info = error_info(status) if status is not None else None
    out = {
        "code": exc.code().name,
        "reason": info.reason if info is not None else "",
        "message": exc.details() or "",
        "where": where,
    }
    if exc.code() is grpc.StatusCode.UNAVAILABLE and info is None:
        out["message"] = f"cannot reach {where}: {exc.details()}"
    return out


def call_failed(exc: grpc.aio.AioRpcError, where: str, json_out: bool) -> NoReturn:
    """Report a failed call and exit with its code."""
    problem = failure(exc, where)
    if json_out:
        emit({"error": problem})
    reason = f" ({problem['reason']})" if problem["reason"] else ""
    err.print(f"[red]{escape(problem['code'])}{escape(reason)}: {escape(problem['message'])}[/red]")
    raise typer.Exit(exit_code(exc.code()))


def fail_usage(message: str) -> NoReturn:
    err.print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(USAGE)


def parse_time(text: str | None, option: str) -> Any:
    """An RFC 3339 time with an offset, as a protobuf Timestamp (None when not given)."""
    if text is None:
        return None
    from google.protobuf.timestamp_pb2 import Timestamp

    try:
        at = timestamp_from_text(text)
    except ValueError:
        fail_usage(f"{option}: {text!r} is not a time with an offset (2026-01-31T12:00:00Z)")
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts
