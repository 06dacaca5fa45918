"""gRPC RegisterContact against the real contacts service (subprocesses), next to a trivial
grpc.aio server in a subprocess, with a load client (this process, grpc.aio on uvloop).

``compare`` is generic over the service and the call (a Workload): bench/orders.py runs
PlaceOrder through it the same way."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench.common import Metric, log, percentile, scaled
from bench.procs import CpuMeter, free_port, running, service_env, tail, wait_serving
from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from shared.grpckit.client import bearer
from shared.testing import tokens

IN_FLIGHT = 32  # docs/architecture.md §6; by Little's law p99 <= 20 ms needs > 1,600 calls/s
WARMUP = 1.0


@dataclass
class LoadResult:
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    ok: int
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    cpu: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "calls_per_s": round(self.calls_per_s, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "ok_calls": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            **self.cpu,
        }


@dataclass(frozen=True)
class Workload:
    """One kind of call: the stub to build on a channel, the method, and the w-th caller's i-th
    request (``run`` is unique per load run)."""

    stub: Callable[[grpc.aio.Channel], Any]
    method: str
    request: Callable[[str, int, int], Any]


def _register_request(run: str, w: int, i: int) -> pb.RegisterContactRequest:
    return pb.RegisterContactRequest(
        email=f"load{run}.{w}.{i}@shop.example.com",
        first_name="Ada",
        last_name="Lovelace",
        tags=["bench", "vip"],
        request_id=uuid.uuid4().hex,
    )


REGISTER_CONTACT = Workload(pb_grpc.ContactsServiceStub, "RegisterContact", _register_request)


async def load(
    ports: list[int], seconds: float, cpu: CpuMeter, work: Workload = REGISTER_CONTACT
) -> LoadResult:
    """IN_FLIGHT concurrent callers spread over one channel per port; unique requests."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in ports]
    rpcs = [getattr(work.stub(c), work.method) for c in channels]
    auth = bearer(tokens.SERVICE_TOKEN)  # every call carries a token (the baseline ignores it)
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    first_error: list[str] = []
    started = time.perf_counter()
    measure_from, end = started + WARMUP, started + WARMUP + seconds

    async def caller(w: int) -> None:
        rpc = rpcs[w % len(rpcs)]
        i = 0
        while time.perf_counter() < end:
            i += 1
            request = work.request(run, w, i)
            t0 = time.perf_counter()
            try:
                await rpc(request, timeout=10, metadata=auth)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                if not first_error:
                    first_error.append(f"{exc.code().name}: {exc.details()}")
                continue
            t1 = time.perf_counter()
            if measure_from <= t1 <= end:
                latencies.append(t1 - t0)

    async def meter() -> None:
        await asyncio.sleep(WARMUP)
        cpu.start()

    try:
        await asyncio.gather(meter(), *(caller(w) for w in range(IN_FLIGHT)))
        usage = cpu.stop()
    finally:
        for c in channels:
            await c.close()
    return LoadResult(
        calls_per_s=len(latencies) / seconds,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        ok=len(latencies),
        errors=dict(errors),
        first_error=first_error[0] if first_error else "",
        cpu=usage,
    )


async def _trivial(seconds: float, work: Workload) -> LoadResult:
    port = free_port()
    async with running("grpc-trivial", ["-m", "bench.trivial_server", str(port)], {}) as (
        proc,
        path,
    ):
        await wait_serving(port, proc, path)
        return await load([port], seconds, CpuMeter({"server": proc.pid, "client": _self()}), work)


@dataclass(frozen=True)
class Service:
    """A real service's serve role under load."""

    name: str  # python -m services.<name> serve
    work: Workload
    env: Callable[[], dict[str, str]] = dict  # extra environment (on top of service_env)


CONTACTS = Service("contacts", REGISTER_CONTACT)


async def _service(
    dsn: str, processes: int, seconds: float, notes: list[str], service: Service = CONTACTS
) -> LoadResult:
    ports = [free_port() for _ in range(processes)]
    name = service.name
    async with contextlib.AsyncExitStack() as stack:
        procs = []
        for i, port in enumerate(ports):
            procs.append(
                await stack.enter_async_context(
                    running(
                        f"{name}-serve-{processes}p-{i}",
                        ["-m", f"services.{name}", "serve"],
                        {**service_env(dsn, port), **service.env()},
                    )
                )
            )
        for port, (proc, path) in zip(ports, procs, strict=True):
            took = await wait_serving(port, proc, path)
            log(f"  {name} serve on :{port} SERVING after {took:.1f}s")
        pids = {f"server{i}": p.pid for i, (p, _) in enumerate(procs)}
        result = await load(ports, seconds, CpuMeter({**pids, "client": _self()}), service.work)
        for proc, path in procs:
            if proc.returncode is not None:
                notes.append(f"{name} serve exited with {proc.returncode} under load: {tail(path)}")
            elif text := tail(path, 10):
                notes.append(f"{name} serve ({processes}p) logged under load: {text}")
        return result


def _self() -> int:
    import os

    return os.getpid()


async def compare(
    dsn: str, notes: list[str], service: Service, metric: str, unit: str, configs_key: str
) -> tuple[list[Metric], dict[str, Any]]:
    """The trivial server, then 1 and 2 serve processes of ``service``, IN_FLIGHT calls each;
    ``metric`` (rate, best of the two) and ``metric``_p99_ms next to the trivial server's.
    The details go to the report's ``configs_key``."""
    seconds = scaled(10.0, 2.0)
    method = service.work.method
    log(f"  trivial grpc.aio server ({method}), {IN_FLIGHT} in flight, {seconds:.0f}s")
    base = await _trivial(seconds, service.work)
    log(f"  trivial: {base.calls_per_s:,.0f} calls/s, p99 {base.p99_ms:.1f} ms")
    configs: dict[str, LoadResult] = {}
    for n in (1, 2):
        log(f"  {service.name} serve x{n}, {IN_FLIGHT} in flight, {seconds:.0f}s")
        configs[f"{n}_process"] = r = await _service(dsn, n, seconds, notes, service)
        log(
            f"  serve x{n}: {r.calls_per_s:,.0f} calls/s, p50 {r.p50_ms:.1f} ms, "
            f"p99 {r.p99_ms:.1f} ms, errors {r.errors or 0}"
        )
        if r.errors:
            notes.append(
                f"{method} errors with {n} process(es): {r.errors}; first: {r.first_error}"
            )
    best_name = max(configs, key=lambda k: configs[k].calls_per_s)
    best = configs[best_name]
    note = f"best of 1 and 2 serve processes: {best_name} (both in {configs_key})"
    baseline_desc = f"trivial grpc.aio server (1 process, no DB), {IN_FLIGHT} in flight"
    metrics = [
        Metric(
            name=metric,
            value=best.calls_per_s,
            unit=unit,
            baseline=base.calls_per_s,
            baseline_desc=baseline_desc,
            extra={"config": best_name, "note": note},
        ),
        Metric(
            name=f"{metric}_p99_ms",
            value=best.p99_ms,
            unit="ms",
            baseline=base.p99_ms,
            baseline_desc=baseline_desc,
            extra={"config": best_name, "note": note},
        ),
    ]
    details = {"baseline_trivial": base.summary(), **{k: v.summary() for k, v in configs.items()}}
    return metrics, details


async def grpc_register(dsn: str, notes: list[str]) -> tuple[list[Metric], dict[str, Any]]:
    return await compare(
        dsn, notes, CONTACTS, "grpc_register_contact", "calls/s", configs_key="grpc_configs"
    )
