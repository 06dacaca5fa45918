"""The workers' Prometheus metrics and their HTTP endpoint: ``/metrics`` and ``/healthz`` (200
while the process serves; Kubernetes probes the gRPC health service on the gRPC port like the
suite's other roles). Process RSS and CPU come with prometheus-client's default collectors."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

MESSAGES = Counter(
    "crm_delivery_messages_total",
    "Messages the delivery workers handled, by channel and outcome (sent, retry, rejected).",
    ["channel", "status"],
)
SEND_SECONDS = Histogram(
    "crm_delivery_send_seconds",
    "Time to send one message to the next hop (SMTP relay, SMS gateway, webhook receiver).",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SMTP_CONNECTIONS = Gauge(
    "crm_delivery_smtp_connections", "Open SMTP connections in the pool (busy or idle)."
)
BATCHES = Counter(
    "crm_delivery_batches_total",
    "Deliver calls, by answer (ok, or the refusal's reason).",
    ["result"],
)


def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI app of the metrics port."""
    path = environ.get("PATH_INFO", "")
    if path == "/metrics":
        start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [generate_latest()]
    if path == "/healthz":
        start("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    start("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
