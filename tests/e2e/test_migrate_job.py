"""The Kubernetes start-up order as real processes: roles started with MIGRATE_ON_START=false (as
the manifests start them) on an empty database stay alive and NOT_SERVING, answer UNAVAILABLE,
and become SERVING once `python -m services.migrate` (the crm-migrate Job) has run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import grpc
import pytest

from crm.contacts.v1 import contacts_pb2 as pb
from crm.contacts.v1 import contacts_pb2_grpc as pb_grpc
from tests.e2e.processes import NOT_SERVING, ROOT, SERVING, Proc


async def migrate_command(dsn: str, *args: str) -> int:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
        "DATABASE_URL": dsn,
        "LOG_LEVEL": "WARNING",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.migrate", *args],
        env=env,
        timeout=120,
        check=False,
    )
    return done.returncode


async def test_roles_wait_not_serving_until_the_migrate_job_ran(
    empty_dsn: str, procs: list[Proc]
) -> None:
    serve = Proc("serve", empty_dsn, MIGRATE_ON_START="false")
    project = Proc("project", empty_dsn, MIGRATE_ON_START="false")
    procs += [serve, project]
    for role in (serve, project):
        await role.wait_health(SERVING, service="liveness")  # alive: no restart by the kubelet
    await asyncio.sleep(1.5)  # long enough to have migrated, had they been allowed to
    for role in (serve, project):
        assert await role.health() == NOT_SERVING
    async with serve.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.ContactsServiceStub(ch).RegisterContact(
                pb.RegisterContactRequest(email="early@e2e.io"), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert not await conn.fetchval("SELECT to_regclass('public.crm_migrations') IS NOT NULL")
    finally:
        await conn.close()

    assert await migrate_command(empty_dsn, "--check") == 1
    assert await migrate_command(empty_dsn) == 0
    assert await migrate_command(empty_dsn, "--check") == 0
    for role in (serve, project):
        await role.wait_health(SERVING, timeout=30)
    async with serve.channel() as ch:
        reply = await pb_grpc.ContactsServiceStub(ch).RegisterContact(
            pb.RegisterContactRequest(email="after@e2e.io"), timeout=5
        )
        assert reply.contact.contact_id
    assert serve.terminate() == 0
    assert project.terminate() == 0


async def test_the_migrate_command_refuses_unknown_arguments(empty_dsn: str) -> None:
    assert await migrate_command(empty_dsn, "--frobnicate") != 0
