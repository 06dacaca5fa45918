"""Services as real processes for the end-to-end tests: start a role (with the test token table
and service token, shared/testing/tokens.py), wait for its health, call it with a role's token,
stop it with SIGTERM, kill it and start it again on the same ports; calls retried with their
request id until acknowledged (``Retrying``)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.grpckit import client
from shared.testing import tokens

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(
        self, role: str, database_url: str, service: str = "contacts", **extra: str
    ) -> None:
        self.grpc_port, self.metrics_port = free_port(), free_port()
        self.args = [sys.executable, "-m", f"services.{service}", role]
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
            "DATABASE_URL": database_url,
            "GRPC_PORT": str(self.grpc_port),
            "METRICS_PORT": str(self.metrics_port),
            "LOG_LEVEL": "WARNING",
            **tokens.ENV,
            **extra,
        }
        self.start()

    def start(self) -> None:
        """Start the role (again, after ``kill``: the same ports and environment)."""
        self.p = subprocess.Popen(self.args, env=self.env)

    def channel(self, role: str = "service") -> grpc.aio.Channel:
        """A channel to its gRPC port whose calls carry the test token of ``role``."""
        return client.channel(f"127.0.0.1:{self.grpc_port}", tokens.TOKENS[role])

    async def health(self, service: str = "") -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            r = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            return int(r.status)

    async def wait_health(self, status: int, service: str = "", timeout: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            assert self.p.poll() is None, "the service exited"
            try:
                if await self.health(service) == status:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "health not reached"
            await asyncio.sleep(0.1)

    def terminate(self, timeout: float = 15) -> int:
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye (as an OOM kill or a lost node)."""
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class Retrying:
    """Calls retried with the same request (so the same request id) until acknowledged, as a
    client should after a retryable status; anything else fails the test."""

    def __init__(self) -> None:
        self.refused: collections.Counter[grpc.StatusCode] = collections.Counter()
        self.retried: set[str] = set()  # the request ids that needed more than one attempt

    async def until_acked(self, call: Any, request: Any, timeout: float = 10) -> Any:
        while True:
            try:
                return await call(request, timeout=timeout)
            except grpc.aio.AioRpcError as e:
                self.refused[e.code()] += 1
                assert e.code() in RETRYABLE, f"{e.code()}: {e.details()}"
                self.retried.add(getattr(request, "request_id", ""))
                await asyncio.sleep(0.05)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
