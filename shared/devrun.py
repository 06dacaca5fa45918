"""`make run`: start the suite on this machine and stop all of it on Ctrl-C.

Starts the embedded PostgreSQL unless DATABASE_URL is set, migrates the database once (as the
crm-migrate Job does in Kubernetes), then starts every role of every service the caller passes
(services/run.py passes the registry) as child processes with MIGRATE_ON_START=false, waits until
each reports SERVING, and prints the addresses (a project role's gRPC port serves its Admin API,
which the `crm` command finds there by default).

Access control is on as in production: at each start it makes fresh tokens — one per service
(its service token, presented when it calls another service), one operator and one auditor
token — hands every role their table (hashes only, CRM_TOKENS, plus any CRM_TOKENS the caller
set, to keep a token of one's own across restarts) and prints the operator and auditor tokens
with a line to export.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from shared.db import embedded
from shared.grpckit.auth import new_token, table_line
from shared.migrations import migrate_services
from shared.service import ServiceSpec
from shared.settings import Settings

console = Console()


@dataclass(frozen=True)
class Role:
    service: str
    role: str
    grpc_port: int
    metrics_port: int
    env: Mapping[str, str] = field(default_factory=dict)  # role-specific settings
    http: str = ""  # other endpoints, printed in the table


def roles_of(services: Sequence[ServiceSpec]) -> list[Role]:
    """Every role of every service, as its spec says make run starts it."""
    return [
        Role(spec.name, role, dev.grpc_port, dev.metrics_port, dev.env, dev.http)
        for spec in services
        for role, dev in spec.dev.items()
    ]


@dataclass(frozen=True)
class DevTokens:
    """This start's tokens: the table every role gets, and each token by its name."""

    table: str
    tokens: Mapping[str, str]  # name -> token; services by their name, "dev-operator", …

    @classmethod
    def make(cls, services: Sequence[ServiceSpec]) -> DevTokens:
        roles = {spec.name: "service" for spec in services}
        roles |= {"dev-operator": "operator", "dev-auditor": "auditor"}
        tokens = {name: new_token() for name in roles}
        lines = [table_line(name, roles[name], token) for name, token in tokens.items()]
        return cls("\n".join([*lines, os.environ.get("CRM_TOKENS", "")]).strip(), tokens)

    def env(self, service: str) -> dict[str, str]:
        return {"CRM_TOKENS": self.table, "CRM_SERVICE_TOKEN": self.tokens[service]}


def _healthy(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(r.status == health_pb2.HealthCheckResponse.SERVING)


def _print_tokens(tokens: DevTokens) -> None:
    """The people's tokens of this start, and how to use them (README, Calling the API)."""
    for name in ("dev-operator", "dev-auditor"):
        console.print(f"{name} token: {tokens.tokens[name]}", soft_wrap=True)
    console.print(
        "call the APIs with `authorization: Bearer <token>` (operators reading personal data"
        " also send `x-crm-reason: <why>`), e.g.:",
        soft_wrap=True,
    )
    console.print(f"  export CRM_TOKEN={tokens.tokens['dev-operator']}", soft_wrap=True)


def main(services: Sequence[ServiceSpec]) -> int:
    roles = roles_of(services)
    tokens = DevTokens.make(services)
    server = None
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        console.print("starting the embedded PostgreSQL …")
        dsn, server = embedded.start(embedded.default_data_dir())
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        console.print("migrating …")
        in_store = Settings().eventstore_backend == "postgres"
        asyncio.run(migrate_services(dsn, services, store=in_store))
        for r in roles:
            env = {
                **os.environ,
                "DATABASE_URL": dsn,
                "MIGRATE_ON_START": "false",  # migrated above: the roles only check
                "GRPC_PORT": str(r.grpc_port),
                "METRICS_PORT": str(r.metrics_port),
                "LOG_FORMAT": os.environ.get("LOG_FORMAT", "console"),
                **tokens.env(r.service),
                **r.env,
            }
            children.append(
                subprocess.Popen([sys.executable, "-m", f"services.{r.service}", r.role], env=env)
            )
        deadline = time.monotonic() + 120
        pending = list(roles)
        while pending and not stopping:
            if any(c.poll() is not None for c in children):
                console.print("[red]a service exited during start-up; see its log above[/red]")
                return 1
            pending = [r for r in pending if not _healthy(r.grpc_port)]
            if time.monotonic() > deadline:
                console.print(f"[red]not healthy after 120 s: {pending}[/red]")
                return 1
            time.sleep(0.2)
        table = Table(title="CRM suite is running (Ctrl-C stops everything)")
        for col in ("service", "role", "gRPC", "metrics", "HTTP"):
            table.add_column(col, no_wrap=True)
        for r in roles:
            table.add_row(
                r.service,
                r.role,
                f"127.0.0.1:{r.grpc_port}",
                f"http://127.0.0.1:{r.metrics_port}/metrics",
                r.http,
            )
        # Never squeeze the addresses: at its natural width even when the output is narrower
        # (a log file counts as 80 columns).
        natural = Measurement.get(console, console.options.update_width(1000), table).maximum
        Console(width=max(console.width, natural)).print(table)
        console.print(f"database: {dsn}")
        _print_tokens(tokens)
        console.print(
            "operators: every project role serves the Admin API on its gRPC port: "
            "`crm projections status`, `crm parked list`, `crm events tail` "
            "(README, 'Operating projections')",
            soft_wrap=True,
        )
        while not stopping:
            if any(c.poll() is not None for c in children):
                console.print("[red]a service exited; stopping the suite[/red]")
                return 1
            time.sleep(0.5)
        return 0
    finally:
        console.print("stopping …")
        for c in children:
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)
        for c in children:
            try:
                c.wait(30)
            except subprocess.TimeoutExpired:
                c.kill()
        if server is not None:
            embedded.stop(server)
            console.print("embedded PostgreSQL stopped")
