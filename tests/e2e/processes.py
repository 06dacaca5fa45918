"""Services as real processes for the end-to-end tests: start a role (with the test token table
and service token, shared/testing/tokens.py), wait for its health, call it with a role's token,
stop it with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

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
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
            "DATABASE_URL": database_url,
            "GRPC_PORT": str(self.grpc_port),
            "METRICS_PORT": str(self.metrics_port),
            "LOG_LEVEL": "WARNING",
            **tokens.ENV,
            **extra,
        }
        self.p = subprocess.Popen([sys.executable, "-m", f"services.{service}", role], env=env)

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
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
