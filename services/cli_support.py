"""What the `crm events` and `crm audit` commands share: exit codes, the database, keys, files
and how a verification is reported; and how every command prints a table (``print_wide``).

Exit codes: 0 all is well, 1 tampering found, 2 a usage, file or connection error. Machine
output (exports, checkpoints, proofs, and reports with ``--json``) goes to stdout; progress,
summaries and human reports to stderr.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar

import asyncpg
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from shared.domain.timestamps import timestamp_from_text
from shared.eventstore.audit.checkpoints import (
    Checkpoint,
    CheckpointFormatError,
    SigningKey,
    parse_public_key,
)
from shared.eventstore.audit.offline import read_checkpoints
from shared.eventstore.audit.postgres import PostgresAuditLog
from shared.eventstore.audit.report import Report

OK, TAMPER, USAGE = 0, 1, 2
err = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")


def fail(message: str, code: int = USAGE) -> NoReturn:
    err.print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(code)


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a database that cannot be reached or read is exit 2."""
    try:
        return asyncio.run(work)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        fail(f"database: {type(exc).__name__}: {exc}")


async def connect(database_url: str) -> PostgresAuditLog:
    url = database_url or os.environ.get("DATABASE_URL", "")
    if not url:
        fail("no database: set DATABASE_URL or pass --database-url")
    from shared.db import connect_pool

    return PostgresAuditLog(await connect_pool(url, min_size=1, max_size=2, wait_seconds=3))


def stdout() -> BinaryIO:
    return typer.get_binary_stream("stdout")


def emit(body: Any) -> None:
    """One JSON line on stdout."""
    out = stdout()
    out.write(orjson.dumps(body) + b"\n")
    out.flush()


def lines(path: Path) -> Iterator[bytes]:
    """The lines of a file (``-``: standard input); a file that cannot be read is exit 2."""
    if str(path) == "-":
        yield from typer.get_binary_stream("stdin")
        return
    try:
        with path.open("rb") as f:
            yield from f
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")


def load_checkpoints(path: Path) -> list[Checkpoint]:
    try:
        return read_checkpoints(lines(path))
    except CheckpointFormatError as exc:
        fail(f"{path}: {exc}")


def pinned_keys(values: list[str] | None) -> list[bytes]:
    """``--public-key``: each a key (base64 of 32 bytes, or PEM) or a file holding one."""
    keys = []
    for value in values or []:
        path = Path(value)
        try:
            text = path.read_text() if len(value) < 4096 and path.is_file() else value
            keys.append(parse_public_key(text))
        except (OSError, CheckpointFormatError) as exc:
            fail(f"--public-key {value[:60]}: {exc}")
    return keys


def signing_key(text: str) -> SigningKey:
    if not text:
        fail("no signing key: set CHECKPOINT_SIGNING_KEY or pass --signing-key")
    path = Path(text)
    try:
        return SigningKey.parse(path.read_text() if path.is_file() else text)
    except (OSError, CheckpointFormatError) as exc:
        fail(f"signing key: {exc}")


def parse_bound(text: str | None, option: str) -> int | datetime | None:
    """``--since`` / ``--until``: a global position (an integer) or an RFC 3339 time."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        return timestamp_from_text(text)
    except ValueError:
        fail(f"{option}: {text!r} is neither a position nor a time with an offset (…Z)")


def report(result: Report, as_json: bool, what: str) -> int:
    """Print a verification's result; return its exit code."""
    if as_json:
        emit(result.to_json())
        return result.exit_code
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}")
    for f in result.findings.items:
        where = " ".join(
            f"{k} {v}"
            for k, v in (
                ("stream", f.stream),
                ("version", f.version),
                ("position", f.position),
                ("checkpoint", f.checkpoint),
            )
            if v is not None
        )
        err.print(
            f"[red]{f.kind}[/red]: {escape(f.message)}" + (f" ({escape(where)})" if where else "")
        )
    if result.findings.more:
        err.print(f"[red]… and {result.findings.more} more findings[/red]")
    summary = f"{result.events} events in {result.streams} streams"
    if result.checkpoints:
        summary += f", {result.checkpoints} checkpoint(s) compared"
    if result.ok:
        err.print(f"[green]ok[/green]: {what}: {summary}")
    else:
        err.print(
            f"[red]TAMPERING FOUND[/red]: {what}: {summary}, {len(result.findings)} finding(s)"
        )
    return result.exit_code


def exit_with(code: int) -> NoReturn:
    sys.stdout.flush()
    raise typer.Exit(code)


def print_wide(table: Table) -> None:
    """A table on stderr at its natural width even where the output is narrower (a pipe or a
    log counts as 80 columns): names and ids are never cut."""
    natural = Measurement.get(err, err.options.update_width(1000), table).maximum
    Console(stderr=True, width=max(err.width, natural), highlight=False).print(table)
