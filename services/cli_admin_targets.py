"""Where the project roles' Admin APIs listen, and what they run: ``--admin SERVICE=HOST:PORT``
(repeatable), else ``CRM_ADMIN_TARGETS`` (``contacts=HOST:PORT,orders=HOST:PORT``), else `make
run`'s port from the registry; every role asked at once which projections it runs (``survey``),
and the one that runs a given projection (``locate``). Used by `crm projections`, `crm parked`
and `crm events`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import grpc
import typer

from crm.admin.v1 import admin_pb2 as pb
from crm.admin.v1 import admin_pb2_grpc as pb_grpc
from services.cli_calls import CALL_TIMEOUT, FOUND_NOTHING, dial, exit_code, fail_usage, failure
from services.cli_support import err
from services.registry import SERVICES

Admin = Annotated[
    list[str] | None,
    typer.Option(
        "--admin",
        show_default=False,
        help="SERVICE=HOST:PORT of a project role's Admin API (repeatable; env "
        "CRM_ADMIN_TARGETS=contacts=HOST:PORT,…; default: make run's ports)",
    ),
]
Service = Annotated[
    str | None,
    typer.Option("--service", "-s", help="only this service (default: every registered one)"),
]


def admin_targets(flags: Sequence[str] | None, only: str | None = None) -> dict[str, str]:
    """Service name -> host:port of its project role's Admin API, in registry order."""
    targets = {
        spec.name: f"127.0.0.1:{spec.dev['project'].grpc_port}"
        for spec in SERVICES
        if "project" in spec.dev
    }
    given = [t for t in os.environ.get("CRM_ADMIN_TARGETS", "").split(",") if t.strip()]
    for item in [*given, *(flags or [])]:
        name, sep, target = item.strip().partition("=")
        if not sep or ":" not in target:
            fail_usage(f"--admin {item!r}: expected SERVICE=HOST:PORT")
        if name not in targets:
            fail_usage(f"--admin {item!r}: no service {name!r} ({', '.join(targets)})")
        targets[name] = target
    if only is not None:
        if only not in targets:
            fail_usage(f"--service {only!r}: no such service ({', '.join(targets)})")
        return {only: targets[only]}
    return targets


@dataclass
class Survey:
    """Every service's answer to ListProjections, and the ones that did not answer."""

    answers: dict[str, tuple[str, pb.ListProjectionsResponse]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)

    def locate(self, name: str) -> tuple[str, str] | None:
        """(service, target) of the role that runs projection ``name``."""
        for service, (target, answer) in self.answers.items():
            if any(p.name == name for p in answer.projections):
                return service, target
        return None

    def known(self) -> list[str]:
        return sorted(p.name for _, a in self.answers.values() for p in a.projections)


async def survey(targets: dict[str, str], md: Sequence[tuple[str, str]]) -> Survey:
    async def one(service: str, target: str) -> None:
        async with dial(target) as ch:
            try:
                answer = await pb_grpc.AdminServiceStub(ch).ListProjections(
                    pb.ListProjectionsRequest(), metadata=md, timeout=CALL_TIMEOUT
                )
            except grpc.aio.AioRpcError as exc:
                out.errors.append({"service": service, **failure(exc, f"{service} at {target}")})
                out.codes.append(exit_code(exc.code()))
                return
        out.answers[service] = (target, answer)

    out = Survey()
    await asyncio.gather(*(one(s, t) for s, t in targets.items()))
    out.answers = {s: out.answers[s] for s in targets if s in out.answers}  # registry order
    return out


async def locate(
    name: str, service: str | None, flags: Sequence[str] | None, md: Sequence[tuple[str, str]]
) -> tuple[str, str]:
    """(service, target) of the project role that runs projection ``name``; exit 1 when no
    reachable role runs it (2 when some could not be asked)."""
    found = await survey(admin_targets(flags, service), md)
    place = found.locate(name)
    if place is not None:
        return place
    for e in found.errors:
        err.print(f"[red]{e['code']}: {e['message']}[/red]")
    err.print(f"[red]no projection {name!r}; known: {', '.join(found.known()) or 'none'}[/red]")
    raise typer.Exit(max(found.codes, default=FOUND_NOTHING))
