"""`crm contacts …`: operator commands for the contacts service (CSV import, a contact as of
an instant), through its own API (the serve role)."""

from __future__ import annotations

import asyncio
import csv
import math
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, TextIO

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from crm.contacts.v1 import events_pb2
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
from shared.grpckit.client import ClientTls, channel
from shared.settings import Settings

app = typer.Typer(help="Contacts: import customer data, show a contact.", no_args_is_help=True)
console = Console(stderr=True)

PLAIN = ("email", "phone", "external_id", "first_name", "last_name", "locale", "time_zone")
TYPES = ("string", "number", "bool", "timestamp")
BATCH = 500
GRPC_PORT = 50051  # the contacts serve role under make run (spec.py declares it with this)


class BadHeader(ValueError):
    pass


@dataclass
class LocalReport:
    """Rows rejected before sending (malformed CSV, unparsable typed attributes)."""

    errors: list[pb.ImportRowError] = field(default_factory=list)


def check_header(header: list[str]) -> None:
    """Unknown or duplicated columns stop the import before anything is sent."""
    known = [*PLAIN, "tags"]
    seen: set[str] = set()
    for col in header:
        name = col.strip()
        if name in seen:
            raise BadHeader(f"column {name!r} appears twice")
        seen.add(name)
        if name in known:
            continue
        if name.startswith("attributes."):
            _, _, typ = name.partition(":")
            if typ and typ not in TYPES:
                raise BadHeader(f"column {name!r}: type must be one of {', '.join(TYPES)}")
            continue
        raise BadHeader(
            f"unknown column {name!r}; known: {', '.join(known)}, attributes.<name>[:type]"
        )
    if not seen & {"email", "phone", "external_id"}:
        raise BadHeader("the file needs an email, phone or external_id column")


def _attribute(value: str, typ: str) -> events_pb2.AttributeValue:
    if typ == "number":
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("numbers must be finite")
        return events_pb2.AttributeValue(number_value=number)
    if typ == "bool":
        low = value.strip().lower()
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError("booleans are true/false, 1/0 or yes/no")
        return events_pb2.AttributeValue(bool_value=low in ("true", "1", "yes"))
    if typ == "timestamp":
        ts = events_pb2.AttributeValue()
        ts.timestamp_value.FromDatetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
        return ts
    return events_pb2.AttributeValue(string_value=value)


def read_rows(handle: TextIO, local: LocalReport) -> Iterator[pb.ImportRow]:
    """Rows of a CSV file, numbered by their line in the file (the header is line 1)."""
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise BadHeader("the file is empty")
    check_header(header)
    columns = [h.strip() for h in header]
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue  # blank line
        if len(values) != len(columns):
            local.errors.append(
                pb.ImportRowError(
                    row_number=line,
                    field="",
                    reason="MALFORMED_ROW",
                    message=f"{len(values)} fields, the header has {len(columns)}",
                )
            )
            continue
        row = pb.ImportRow(row_number=line)
        try:
            for col, value in zip(columns, values, strict=True):
                value = value.strip()
                if not value:
                    continue
                if col == "tags":
                    row.tags.extend(t for t in value.replace("|", ";").split(";") if t.strip())
                elif col in PLAIN:
                    setattr(row, col, value)
                else:
                    name, _, typ = col.removeprefix("attributes.").partition(":")
                    row.attributes[name].CopyFrom(_attribute(value, typ or "string"))
        except ValueError as exc:
            local.errors.append(
                pb.ImportRowError(
                    row_number=line, field=col, reason="INVALID_ATTRIBUTE", message=str(exc)
                )
            )
            continue
        yield row


async def import_csv(
    path: Path,
    target: str,
    *,
    token: str,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> tuple[pb.ImportContactsResponse, LocalReport]:
    """Stream a CSV file to ImportContacts with ``token`` (an operator's or a service's); return
    the server's summary and local rejections. TLS as the GRPC_TLS_* settings say."""
    local = LocalReport()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = read_rows(handle, local)
        first = next(rows, None)  # surface header errors before connecting

        async def messages() -> AsyncIterator[pb.ImportContactsRequest]:
            pending = [first] if first is not None else []
            for row in rows:
                pending.append(row)
                if len(pending) == batch:
                    yield pb.ImportContactsRequest(rows=pending)
                    if progress:
                        progress(handle.tell())
                    pending = []
            if pending:
                yield pb.ImportContactsRequest(rows=pending)
            if progress:
                progress(handle.tell())

        async with channel(target, token, tls=ClientTls.of(Settings())) as ch:
            stub = pb_grpc.ContactsServiceStub(ch)
            response = await stub.ImportContacts(messages())
    return response, local


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    target: Annotated[str, typer.Option(help="contacts gRPC address")] = "127.0.0.1:50051",
    batch: Annotated[int, typer.Option(min=1, max=1000, help="rows per message")] = BATCH,
    token: Annotated[
        str,
        typer.Option(envvar="CRM_TOKEN", help="your bearer token (operator)", show_default=False),
    ] = "",
) -> None:
    """Import (upsert) contacts from a CSV file.

    Columns: email, phone, external_id, first_name, last_name, locale, time_zone, tags
    (separated by ; or |), and attributes.<name>[:string|number|bool|timestamp]. A row updates
    the contact holding its external id, else its email, else its phone; empty cells leave a
    field as it is, so running the same file twice changes nothing. Imported contacts trigger
    no flows. Errors name the file's line (the header is line 1). Needs an operator token
    (--token or CRM_TOKEN; `make run` prints one).
    """
    if not token:
        console.print(
            "[red]a token is required: --token or CRM_TOKEN (README, Calling the API)[/red]"
        )
        raise typer.Exit(2)
    size = file.stat().st_size
    with Progress(
        TextColumn("[bold]importing[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(file.name, total=size)
        try:
            response, local = asyncio.run(
                import_csv(
                    file,
                    target,
                    token=token,
                    batch=batch,
                    progress=lambda done: bar.update(task, completed=done),
                )
            )
        except BadHeader as exc:
            console.print(f"[red]{file}: {exc}[/red]")
            raise typer.Exit(2) from None
        except grpc.RpcError as exc:
            console.print(f"[red]import failed: {exc.code().name}: {exc.details()}[/red]")
            raise typer.Exit(3) from None
    errors = sorted([*local.errors, *response.errors], key=lambda e: e.row_number)
    summary = Table(title=f"import of {file.name}")
    for col in ("created", "updated", "unchanged", "failed"):
        summary.add_column(col, justify="right")
    summary.add_row(
        str(response.created),
        str(response.updated),
        str(response.unchanged),
        str(response.failed + len(local.errors)),
    )
    console.print(summary)
    if errors:
        table = Table(title="rejected rows (first 50)")
        for col in ("line", "field", "reason", "message"):
            table.add_column(col)
        for e in errors[:50]:
            table.add_row(str(e.row_number), e.field, e.reason, e.message)
        console.print(table)
        raise typer.Exit(1)


Target = Annotated[
    str | None,
    typer.Option(
        help="contacts gRPC address (env CRM_CONTACTS_TARGET; default make run's)",
        show_default=False,
    ),
]
Reason = Annotated[
    str,
    typer.Option(
        "--reason",
        envvar="CRM_REASON",
        show_default=False,
        help="why you read personal data (sent as x-crm-reason)",
    ),
]


@app.command("show")
def show(
    contact_id: Annotated[str, typer.Argument(help="the contact's id")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="as it was then (RFC 3339 with offset)")
    ] = None,
    target: Target = None,
    json_out: Json = False,
    token: Token = "",
    reason: Reason = "",
) -> None:
    """A contact now, or as it was at --as-of (folded from its history by the contacts API).
    Exit 1 when there is no such contact (then), 2 on a usage or connection error."""
    request = pb.GetContactRequest(contact_id=contact_id, as_of=parse_time(as_of, "--as-of"))
    where = serve_target("contacts", target, f"127.0.0.1:{GRPC_PORT}")
    md = metadata(token, reason=reason)

    async def get() -> pb.Contact:
        async with dial(where) as ch:
            try:
                answer = await pb_grpc.ContactsServiceStub(ch).GetContact(
                    request, metadata=md, timeout=CALL_TIMEOUT
                )
            except grpc.aio.AioRpcError as exc:
                call_failed(exc, f"contacts at {where}", json_out)
        return answer.contact

    contact = asyncio.run(get())
    if json_out:
        emit(as_json(contact))
        raise typer.Exit(0)
    table = Table(title=f"contact {contact.contact_id}" + (f" as of {as_of}" if as_of else ""))
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name, value in as_json(contact).items():
        if value not in ("", [], {}, None, False) or name in ("archived", "erased"):
            table.add_row(name, str(value))
    console.print(table)
    raise typer.Exit(0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
