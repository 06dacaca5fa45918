"""`crm flows apply | list | show` against a served notifications API: files applied (created,
unchanged, updated), listed, shown as a file that applies again unchanged; a file that is not a
flow, a flow that does not check, and a caller without the right role all fail clearly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog
from typer.testing import CliRunner

from services.cli import app
from services.notifications.tests.test_flows_api import EXAMPLES, Flows
from services.notifications.tests.test_flows_api import flows as flows  # the fixture
from shared.logs import configure
from shared.testing import tokens


@pytest.fixture(autouse=True)
def logs_to_stderr() -> Iterator[None]:
    """The served role logs to stderr, never into a `crm` command's output."""
    configure("INFO", "console", cache=False)
    yield
    structlog.reset_defaults()


def edited(source: Path, to: Path, old: str, new: str) -> str:
    to.write_text(source.read_text().replace(old, new))
    return str(to)


async def crm(*args: str, role: str = "operator") -> tuple[int, str, str]:
    env = {"CRM_TOKEN": tokens.TOKENS[role]}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_apply_list_show(flows: Flows, tmp_path: Path) -> None:
    target = ["--target", flows.served.target]
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    code, out, errors = await crm("flows", "apply", *files, *target)
    assert code == 0, errors
    assert out.splitlines() == [
        "abandoned-cart: created (version 1)",
        "birthday: created (version 1)",
        "review-request: created (version 1)",
        "welcome-series: created (version 1)",
        "win-back: created (version 1)",
    ]
    code, out, _ = await crm("flows", "apply", files[0], *target)
    assert (code, out) == (0, "abandoned-cart: unchanged (version 1)\n")

    changed = edited(Path(files[0]), tmp_path / "cart.yaml", "3600s", "7200s")
    code, out, _ = await crm("flows", "apply", changed, "--json", *target)
    [answer] = [orjson.loads(line) for line in out.splitlines()]
    assert (code, answer["result"], answer["flow"]["version"]) == (0, "updated", 2)

    await flows.served.settle()
    code, out, _ = await crm("flows", "list", *target)
    assert code == 0 and [line.split("\t")[:3] for line in out.splitlines()] == [
        ["abandoned-cart", "active", "version 2"],
        ["birthday", "active", "version 1"],
        ["review-request", "active", "version 1"],
        ["welcome-series", "active", "version 1"],
        ["win-back", "active", "version 1"],
    ]
    code, out, _ = await crm("flows", "show", "abandoned-cart", "--version", "1", *target)
    assert code == 0 and out.startswith("# abandoned-cart, version 1 of 2\n")
    shown = tmp_path / "shown.yaml"
    shown.write_text(out)
    code, out, _ = await crm("flows", "apply", str(shown), *target)
    assert (code, out) == (0, "abandoned-cart: updated (version 3)\n")  # back to version 1's
    code, _, errors = await crm("flows", "show", "nope", *target)
    assert code == 1 and "FLOW_NOT_FOUND" in errors


async def test_bad_files_and_callers(flows: Flows, tmp_path: Path) -> None:
    target = ["--target", flows.served.target]
    not_a_flow = tmp_path / "x.yaml"
    not_a_flow.write_text("key: x\nstepz: []\n")
    code, _, errors = await crm("flows", "apply", str(not_a_flow), *target)
    assert code == 2 and "x.yaml" in errors and "stepz" in errors
    bad = edited(
        EXAMPLES / "welcome-series.yaml", tmp_path / "b.yaml", "on_event: done", "on_event: nowhere"
    )
    code, _, errors = await crm("flows", "apply", bad, *target)
    assert code == 2 and "STEP_UNKNOWN" in errors and "nowhere" in errors
    good = str(EXAMPLES / "win-back.yaml")
    code, _, errors = await crm("flows", "apply", good, *target, role="auditor")
    assert code == 2 and "ROLE_NOT_ALLOWED" in errors
    assert await flows.events() == 0
    code, _, errors = await crm("flows", "apply", str(tmp_path / "missing.yaml"), *target)
    assert code == 2 and "missing.yaml" in errors


async def test_runs_and_a_dry_run_from_the_command_line(flows: Flows, tmp_path: Path) -> None:
    import uuid

    from services.notifications.adapters.flow_engine import FlowEngine
    from shared.eventstore import NewEvent, StreamState
    from shared.projections.runner import ProjectionRunner

    target = ["--target", flows.served.target]
    code, _, errors = await crm("flows", "apply", str(EXAMPLES / "abandoned-cart.yaml"), *target)
    assert code == 0, errors
    ada, cart = str(uuid.uuid4()), str(uuid.uuid4())
    abandoned = NewEvent("crm.orders.v1.CartAbandoned", {"contact_id": ada, "cart_id": cart})
    await flows.store.append(f"cart-{cart}", [abandoned], StreamState.NO_STREAM)
    await ProjectionRunner(flows.store, FlowEngine(flows.store)).catch_up()

    code, out, errors = await crm("flows", "runs", "--contact", ada, *target)
    assert code == 0, errors
    [line] = out.splitlines()
    fields = line.split("\t")
    assert fields[2:5] == [ada, "waiting", "wait-an-hour"]
    assert fields[-1] == "crm.orders.v1.CartAbandoned"

    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    start, end = (now - timedelta(days=1)).isoformat(), (now + timedelta(days=2)).isoformat()
    window = ["--start", start, "--end", end]
    code, out, errors = await crm("flows", "dry-run", "abandoned-cart", *window, *target)
    assert code == 0, errors
    lines = out.splitlines()
    assert lines[0].startswith("1 events read; 1 runs started")
    # no template by the flow's keys here: each send says so
    assert "TEMPLATE_NOT_FOUND: 2" in out
    assert [x.split("\t")[2] for x in lines if "\t" in x] == ["reminder", "incentive"]

    code, out, _ = await crm("flows", "dry-run", "abandoned-cart", "--json", *window, *target)
    assert code == 0 and orjson.loads(out)["runs_started"] == 1
    code, _, errors = await crm(
        "flows",
        "dry-run",
        "abandoned-cart",
        "--start",
        "yesterday",
        "--end",
        "2100-01-01T00:00:00Z",
        *target,
    )
    assert code == 2 and "--start" in errors
