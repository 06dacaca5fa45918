"""Subprocesses for the benchmarks: always stopped (try/finally), their output kept in a log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import grpc
import psutil  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.testing import tokens

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.asynccontextmanager
async def running(
    name: str, args: list[str], env: dict[str, str]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    """Start ``python <args>`` with ``env`` added; yield it and its log path; always stop it."""
    log_path = LOGS / f"{name}.log"
    out = _open_log(log_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out
    )
    try:
        yield proc, log_path
    finally:
        await stop(proc)
        out.close()


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def service_env(dsn: str, port: int) -> dict[str, str]:
    return {
        "DATABASE_URL": dsn,
        "GRPC_PORT": str(port),
        "GRPC_HOST": "127.0.0.1",
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_GRACE_SECONDS": "2",
        **tokens.ENV,  # access control on, as in production
    }


async def wait_serving(
    port: int, proc: asyncio.subprocess.Process, log_path: Path, timeout: float = 90.0
) -> float:
    """Wait for grpc health SERVING; return the seconds it took. Raise if the process dies."""
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"exited with {proc.returncode}:\n{tail(log_path)}")
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"not SERVING after {timeout}s:\n{tail(log_path)}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.perf_counter() - started
            await asyncio.sleep(0.1)


class CpuMeter:
    """CPU used by some processes (and the whole box) between start() and stop(), in % of one
    core (so 200% is both cores of this machine)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.before: dict[str, float] = {}
        self.started = 0.0

    def _times(self) -> dict[str, float]:
        out = {}
        for name, p in self.procs.items():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                out[name] = t.user + t.system
        box = psutil.cpu_times()
        out["box_busy"] = (
            box.user + box.system + getattr(box, "softirq", 0) + getattr(box, "irq", 0)
        )
        return out

    def start(self) -> None:
        self.before = self._times()
        self.started = time.perf_counter()

    def stop(self) -> dict[str, float]:
        after = self._times()
        wall = time.perf_counter() - self.started
        return {
            f"cpu_pct_{k}": round(100 * (after[k] - self.before[k]) / wall, 1)
            for k in after
            if k in self.before
        }
