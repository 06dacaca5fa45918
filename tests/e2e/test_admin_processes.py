"""The Admin API of the project roles as real processes: every registered service's serves it
(found by reflection, answering about its own projections, `crm projections status` over all of
them), and a rebuild whose process is killed with SIGKILL resumes from its scratch read model in
the next process and ends equal to a fresh rebuild, with nothing appended."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from typer.testing import CliRunner

from crm.admin.v1 import admin_pb2 as apb
from crm.admin.v1 import admin_pb2_grpc as apb_grpc
from services.cli import app
from services.contacts.adapters.readmodel import ContactsProjection
from services.contacts.cli import import_csv
from services.registry import SERVICES
from shared.eventstore.postgres import PostgresEventStore
from shared.grpckit import client
from shared.testing import tokens
from shared.testing.readmodels import fresh, snapshot
from tests.e2e.processes import SERVING, Proc

pytestmark = pytest.mark.timeout(300)
ADMIN = "crm.admin.v1.AdminService"


async def services_of(port: int) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in stub.ServerReflectionInfo(iter([request])):
            return [s.name for s in answer.list_services_response.service]
    return []


async def crm(*args: str) -> tuple[int, str, str]:
    env = {"CRM_TOKEN": tokens.TOKENS["operator"]}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_every_registered_service_project_role_serves_the_admin_api(
    dsn: str, procs: list[Proc]
) -> None:
    contacts = Proc("serve", dsn)
    procs.append(contacts)
    near = {"CONTACTS_TARGET": f"127.0.0.1:{contacts.grpc_port}"}
    roles = {spec.name: Proc("project", dsn, spec.name, **near) for spec in SERVICES}
    procs += roles.values()
    for spec in SERVICES:
        role = roles[spec.name]
        await role.wait_health(SERVING)
        assert ADMIN in await services_of(role.grpc_port), spec.name
        for _ in range(100):  # each runner takes its lock soon after the role starts
            async with role.channel("operator") as ch:
                answer = await apb_grpc.AdminServiceStub(ch).ListProjections(
                    apb.ListProjectionsRequest(), timeout=10
                )
            listed = {p.name: p for p in answer.projections}
            if all(p.leader.pid == role.p.pid for p in listed.values()):
                break
            await asyncio.sleep(0.1)
        assert answer.service == spec.name
        assert {p.name for p in spec.projections()} <= set(listed)
        assert all(p.leader.pid == role.p.pid for p in listed.values()), listed
    flags = [f"--admin={name}=127.0.0.1:{p.grpc_port}" for name, p in roles.items()]
    code, out, errors = await crm("projections", "status", "--json", *flags)
    assert code == 0, errors
    assert '"errors":[]' in out.replace(" ", "")
    for p in roles.values():
        assert p.terminate() == 0


def contacts_csv(path: Path, n: int) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "first_name", "tags"])
        for i in range(n):
            w.writerow([f"c{i}@kill.io", f"C{i}", "vip" if i % 3 == 0 else ""])
    return path


async def rebuild(port: int) -> grpc.aio.UnaryStreamCall[Any, Any]:
    ch = client.channel(f"127.0.0.1:{port}", tokens.TOKENS["operator"])
    call = apb_grpc.AdminServiceStub(ch).RebuildProjection(
        apb.RebuildProjectionRequest(projection="contacts")
    )
    call.add_done_callback(lambda _c: asyncio.ensure_future(ch.close()))
    return call


async def caught_up(port: int) -> apb.Projection:
    async with client.channel(f"127.0.0.1:{port}", tokens.TOKENS["operator"]) as ch:
        stub = apb_grpc.AdminServiceStub(ch)
        for _ in range(600):
            answer = await stub.ListProjections(apb.ListProjectionsRequest(), timeout=10)
            mine = next(p for p in answer.projections if p.name == "contacts")
            if mine.lag_events == 0 and mine.checkpoint_position == answer.head_position:
                return mine
            await asyncio.sleep(0.1)
    raise AssertionError("the contacts read model did not catch up")


async def test_a_rebuild_killed_mid_way_resumes_and_equals_a_fresh_one(
    dsn: str, procs: list[Proc], tmp_path: Path
) -> None:
    slow = {"PROJECTION_BATCH_SIZE": "10"}  # many small batches: a rebuild long enough to kill
    serve, project = Proc("serve", dsn), Proc("project", dsn, **slow)
    procs += [serve, project]
    await serve.wait_health(SERVING)
    await project.wait_health(SERVING)
    response, _ = await import_csv(
        contacts_csv(tmp_path / "c.csv", 6000),
        f"127.0.0.1:{serve.grpc_port}",
        token=tokens.TOKENS["operator"],
    )
    assert response.created == 6000
    await caught_up(project.grpc_port)
    store = await PostgresEventStore.connect(dsn, max_size=4)
    try:
        events = await store.pool.fetchval("SELECT count(*) FROM eventstore.events")
        head = await store.head_position()

        call = await rebuild(project.grpc_port)
        async for message in call:
            if message.rebuild.applied_events >= 300:
                break
        project.p.kill()  # SIGKILL: no goodbye, the scratch schema stays as it was
        project.p.wait()
        scratch = await store.pool.fetchval(
            "SELECT position FROM projections.checkpoints WHERE name = 'contacts#rebuild'"
        )
        assert scratch and scratch < head

        again = Proc("project", dsn, **slow)
        procs.append(again)
        await again.wait_health(SERVING)
        answer = await caught_up(again.grpc_port)
        assert answer.last_rebuild.state == apb.Rebuild.STATE_INTERRUPTED
        code, out, errors = await crm(
            "projections",
            "rebuild",
            "contacts",
            "--json",
            "--admin",
            f"contacts=127.0.0.1:{again.grpc_port}",
        )
        assert code == 0, errors
        reports = [json.loads(line) for line in out.splitlines()]
        assert reports[0]["resumed_from_position"] == scratch  # resumed, not started over
        assert reports[-1]["state"] == "STATE_DONE"
        done = (await caught_up(again.grpc_port)).last_rebuild
        assert done.state == apb.Rebuild.STATE_DONE
        assert done.resumed_from_position == scratch
        assert 0 < done.applied_events < 6000
        assert await store.pool.fetchval("SELECT count(*) FROM eventstore.events") == events
        projection = ContactsProjection()
        live = await snapshot(store.pool, projection.schema)
        assert len(live["contacts"]) == 6000
        assert live == await fresh(store, projection, head)
    finally:
        await store.close()
