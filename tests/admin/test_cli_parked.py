"""`crm parked list|show|retry|skip` against a real project role whose read model parks an
event (tests/admin/flaky.py): output parsed from --json, exit codes 0, 1 and 2."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from crm.admin.v1 import admin_pb2_grpc as apb_grpc
from services.contacts.spec import SPEC as CONTACTS
from shared.eventstore.postgres import PostgresEventStore
from shared.testing import tokens
from shared.testing.service_env import Projecting, projecting
from tests.admin.conftest import crm
from tests.admin.flaky import append, role
from tests.admin.test_parked import until_parked

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def env(dsn: str) -> AsyncIterator[tuple[list[str], PostgresEventStore, Projecting]]:
    store = await PostgresEventStore.connect(dsn, max_size=4)
    async with projecting(CONTACTS, dsn, role=role) as flaky:
        # The flaky role stands in for contacts' project role; the others are not asked.
        yield ["--service", "contacts", "--admin", f"contacts={flaky.target}"], store, flaky
    await store.close()


def one(out: str) -> dict[str, Any]:
    (line,) = out.splitlines()
    parsed: dict[str, Any] = json.loads(line)
    return parsed


async def test_parked_list_show_retry_skip(
    env: tuple[list[str], PostgresEventStore, Projecting],
) -> None:
    where, store, flaky = env
    admin = apb_grpc.AdminServiceStub(flaky.channel)
    first = str(await append(store, 1, poison=True))
    second = str(await append(store, 2, poison=True))
    await until_parked(admin, 2)

    code, out, errors = await crm("parked", "list", "--json", *where)
    assert code == 0, errors
    listed = one(out)["parked_events"]
    assert [p["event_id"] for p in listed] == [first, second]
    assert all(p["service"] == "contacts" and p["attempts"] == 3 for p in listed)
    code, _, human = await crm("parked", "list", *where)
    assert code == 0 and first in human and "not fixed" in human

    code, out, _ = await crm("parked", "show", "flaky", first, "--json", *where)
    shown = one(out)
    assert code == 0 and json.loads(shown["event"]["data_json"])["n"] == 1
    code, _, human = await crm("parked", "show", "flaky", first, *where)
    assert code == 0 and "cannot apply 1: not fixed" in human

    code, out, errors = await crm("parked", "retry", "flaky", first, "--json", *where)
    assert code == 1 and one(out)["error"]["reason"] == "PARKED_EVENT_STILL_FAILS"
    assert "not fixed" in errors
    await store.pool.execute("INSERT INTO flaky_rm.fixed VALUES (1)")
    code, out, errors = await crm("parked", "retry", "flaky", first, "--json", *where)
    assert code == 0 and one(out)["applied"] is True, errors

    code, _, errors = await crm("parked", "skip", "flaky", second, *where)
    assert code == 2 and "--reason" in errors  # typer: a required option
    code, out, _ = await crm(
        "parked",
        "skip",
        "flaky",
        second,
        "--reason",
        "bad import row",
        "--json",
        *where,
    )
    assert code == 0 and (one(out)["resolved_by"], one(out)["resolution"]) == (
        tokens.NAMES["operator"],
        "bad import row",
    )
    code, out, _ = await crm("parked", "list", "--json", *where)
    assert one(out)["parked_events"] == []
    code, out, _ = await crm("parked", "list", "--all", "--json", *where)
    assert [p["event_id"] for p in one(out)["parked_events"]] == [second]

    code, _, errors = await crm("parked", "show", "flaky", first, *where)  # retried: gone
    assert code == 1 and "PARKED_EVENT_NOT_FOUND" in errors
    code, _, errors = await crm("parked", "show", "nope", first, *where)
    assert code == 1 and "no projection 'nope'" in errors
    code, _, errors = await crm("parked", "show", "flaky", "not-a-uuid", *where)
    assert code == 2 and "INVALID_EVENT_ID" in errors
