"""grpc_register_contact_auth_cost: what access control costs RegisterContact. The same load
(bench/grpc_load.py: IN_FLIGHT callers, unique requests, each carrying the service token)
against two contacts serve processes running side by side on the same database: one as
deployed (the token hashed and looked up in the table, the RPC's roles checked, every call),
one started through bench/serve_without_tokens.py, which admits every call unread. Rounds
alternate between them, ABBA (this box is noisy); value = median rate with access control,
baseline = median rate without, ratio >= 0.9 is the goal. ``admit_us``: one admission's cost
measured in this process, and each server's CPU time per call, for scale."""

from __future__ import annotations

import contextlib
import os
import timeit

from bench.common import Metric, log, median, scaled
from bench.grpc_load import IN_FLIGHT, LoadResult, load
from bench.procs import CpuMeter, free_port, running, service_env, tail, wait_serving
from crm.contacts.v1 import contacts_pb2  # noqa: F401  (the descriptors admit reads)
from shared.grpckit.auth import AccessControl, TokenTable, declared_rule, parse_tokens
from shared.grpckit.client import bearer
from shared.testing import tokens

ROUNDS = 6
SERVICE, METHOD = "crm.contacts.v1.ContactsService", "RegisterContact"


def admit_us(n: int = 20_000) -> float:
    """Microseconds one admission takes here (the test token table, a RegisterContact call)."""
    access = AccessControl(TokenTable(parse_tokens(tokens.TABLE, "bench")))
    rule = declared_rule(SERVICE, METHOD)
    md = dict(bearer(tokens.SERVICE_TOKEN))
    took = timeit.timeit(lambda: access.admit(md, rule, SERVICE, METHOD), number=n)
    return took / n * 1e6


def cpu_ms_per_call(runs: list[LoadResult]) -> float:
    """The median over ``runs`` of the server's CPU time per acknowledged call, in ms."""
    per_call = [r.cpu["cpu_pct_server"] * 10 / r.calls_per_s for r in runs if r.calls_per_s]
    return round(median(per_call), 3)


async def register_contact(dsn: str, notes: list[str]) -> Metric:
    seconds = scaled(4.0, 2.0)
    checked, unchecked = free_port(), free_port()
    async with contextlib.AsyncExitStack() as stack:
        with_auth = await stack.enter_async_context(
            running(
                "contacts-serve-tokens",
                ["-m", "services.contacts", "serve"],
                service_env(dsn, checked),
            )
        )
        without = await stack.enter_async_context(
            running(
                "contacts-serve-no-tokens",
                ["-m", "bench.serve_without_tokens", "contacts", "serve"],
                service_env(dsn, unchecked),
            )
        )
        sides = [("no_tokens", unchecked, without), ("tokens", checked, with_auth)]
        for _, port, (proc, path) in sides:
            await wait_serving(port, proc, path)
        results: dict[str, list[LoadResult]] = {"tokens": [], "no_tokens": []}

        async def run(key: str, port: int, pid: int) -> float:
            meter = CpuMeter({"server": pid, "client": os.getpid()})
            results[key].append(r := await load([port], seconds, meter))
            if r.errors:
                notes.append(f"auth cost ({key}): errors {r.errors}; first: {r.first_error}")
            return r.calls_per_s

        log(f"  RegisterContact without / with tokens, {IN_FLIGHT} in flight, {seconds:.0f}s each")
        for _, port, (proc, _) in sides:  # warm both (connections, caches), unmeasured
            await load([port], 1.0, CpuMeter({"server": proc.pid}))
        for r in range(ROUNDS):  # ABBA: a drift of the box favours neither side
            for key, port, (proc, _) in sides if r % 2 == 0 else sides[::-1]:
                rate = await run(key, port, proc.pid)
                log(f"  round {r + 1}/{ROUNDS}, {key.replace('_', ' ')}: {rate:,.0f} calls/s")
        for name, (proc, path) in (("with", with_auth), ("without", without)):
            if proc.returncode is not None:
                notes.append(f"contacts serve {name} tokens exited: {tail(path)}")
    per_call = admit_us()
    value = [r.calls_per_s for r in results["tokens"]]
    cpu_ms = cpu_ms_per_call(results["tokens"])
    base = [r.calls_per_s for r in results["no_tokens"]]
    log(f"  one admission: {per_call:.1f} us in this process")
    return Metric(
        name="grpc_register_contact_auth_cost",
        value=median(value),
        unit="calls/s",
        baseline=median(base),
        baseline_desc=(
            "the same contacts serve role admitting every call unread "
            "(bench/serve_without_tokens.py), rounds alternating ABBA"
        ),
        samples=value,
        baseline_samples=base,
        extra={
            "admit_us": round(per_call, 2),
            # the ratio if admission were the only difference (rates on a shared box wander
            # far more than that: an A/A run of two identical servers differs as much)
            "ratio_implied_by_admit_us": round(1 - per_call / (cpu_ms * 1000), 4),
            # what the box's noise moves far less than a rate: the server's CPU per call
            "server_cpu_ms_per_call": cpu_ms,
            "baseline_server_cpu_ms_per_call": cpu_ms_per_call(results["no_tokens"]),
            "p99_ms": [round(r.p99_ms, 2) for r in results["tokens"]],
            "baseline_p99_ms": [round(r.p99_ms, 2) for r in results["no_tokens"]],
        },
    )
