"""`make run`: start the suite on this machine and stop all of it on Ctrl-C.

Starts the embedded PostgreSQL unless DATABASE_URL is set, then every service in both roles as
child processes, waits until each reports SERVING, and prints the addresses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from shared.db import embedded

console = Console()


CONTACTS_GRPC_PORT = 50051
WEBHOOK_PORT = 8080
# Development only: signs test webhooks (X-Shopify-Hmac-Sha256). Set SHOPIFY_WEBHOOK_SECRET to
# use another; the table then does not print it.
DEV_SHOPIFY_WEBHOOK_SECRET = "dev-shopify-webhook-secret"  # noqa: S105
SHOPIFY_WEBHOOK_SECRET = os.environ.get("SHOPIFY_WEBHOOK_SECRET") or DEV_SHOPIFY_WEBHOOK_SECRET
_SHOWN_SECRET = (
    DEV_SHOPIFY_WEBHOOK_SECRET
    if SHOPIFY_WEBHOOK_SECRET == DEV_SHOPIFY_WEBHOOK_SECRET
    else "$SHOPIFY_WEBHOOK_SECRET"
)
# The shop domain(s) whose webhooks are taken (X-Shopify-Shop-Domain); SHOPIFY_SHOP_DOMAINS
# (comma-separated) overrides it.
DEV_SHOPIFY_SHOP_DOMAIN = "dev-shop.myshopify.com"
SHOPIFY_SHOP_DOMAINS = os.environ.get("SHOPIFY_SHOP_DOMAINS") or DEV_SHOPIFY_SHOP_DOMAIN


@dataclass(frozen=True)
class Role:
    service: str
    role: str
    grpc_port: int
    metrics_port: int
    env: Mapping[str, str] = field(default_factory=dict)  # role-specific settings
    http: str = ""  # other endpoints, printed in the table


ROLES = [
    Role("contacts", "serve", CONTACTS_GRPC_PORT, 9464),
    Role("contacts", "project", 50151, 9465),
    Role(
        "orders",
        "serve",
        50052,
        9466,
        env={
            "CONTACTS_TARGET": f"127.0.0.1:{CONTACTS_GRPC_PORT}",
            "WEBHOOK_PORT": str(WEBHOOK_PORT),
            "SHOPIFY_WEBHOOK_SECRET": SHOPIFY_WEBHOOK_SECRET,
            "SHOPIFY_SHOP_DOMAINS": SHOPIFY_SHOP_DOMAINS,
        },
        http=(
            f"POST http://127.0.0.1:{WEBHOOK_PORT}/webhooks/shopify\nsecret: {_SHOWN_SECRET}"
            f"\nshop: {SHOPIFY_SHOP_DOMAINS}"
        ),
    ),
    Role("orders", "project", 50152, 9467),
]


def _healthy(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(r.status == health_pb2.HealthCheckResponse.SERVING)


def main() -> int:
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
        for r in ROLES:
            env = {
                **os.environ,
                "DATABASE_URL": dsn,
                "GRPC_PORT": str(r.grpc_port),
                "METRICS_PORT": str(r.metrics_port),
                "LOG_FORMAT": os.environ.get("LOG_FORMAT", "console"),
                **r.env,
            }
            children.append(
                subprocess.Popen([sys.executable, "-m", f"services.{r.service}", r.role], env=env)
            )
        deadline = time.monotonic() + 120
        pending = list(ROLES)
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
        for r in ROLES:
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


if __name__ == "__main__":
    sys.exit(main())
