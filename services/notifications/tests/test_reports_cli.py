"""`crm reports flow | campaign | template` against a served notifications API: a flow's report
by key and by id as a table (steps, total, days) and as JSON; a campaign's variants; the days
bounded by --from; an unknown flow, a bad time and a bad id fail clearly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import structlog
from typer.testing import CliRunner

from crm.notifications.v1 import flows_pb2 as fpb
from services.cli import app
from services.notifications.domain import decision as d
from services.notifications.tests.test_flows_api import example
from services.notifications.tests.test_reports_api import CAMPAIGN, TEMPLATE, A, B, Reports
from services.notifications.tests.test_reports_api import reports as reports  # the fixture
from shared.logs import configure
from shared.testing import tokens


@pytest.fixture(autouse=True)
def logs_to_stderr() -> Iterator[None]:
    configure("INFO", "console", cache=False)
    yield
    structlog.reset_defaults()


async def crm(*args: str, role: str = "auditor") -> tuple[int, str, str]:
    env = {"CRM_TOKEN": tokens.TOKENS[role], "COLUMNS": "250"}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def line_of(text: str, first: str) -> list[str]:
    """The cells of the table line whose first cell is ``first``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no line {first!r} in:\n{text}")


async def test_a_flow_and_a_campaign_as_tables_and_json(reports: Reports) -> None:
    made = await reports.flows.CreateFlow(fpb.CreateFlowRequest(definition=example("win-back")))
    flow_id = made.flow.flow_id
    first = d.Origin(d.FLOW, flow_id=flow_id, flow_version=1, step_id="first-email")
    await reports.message(A, first, "sent", "opened", "clicked")
    await reports.message(B, first, "sent", "bounced")
    await reports.order(A, "EUR", 4250, datetime.now(UTC) + timedelta(hours=1))
    await reports.message(A, d.Origin(d.CAMPAIGN, campaign_id=CAMPAIGN, variant="b"), "sent")
    await reports.served.settle()
    target = ["--target", reports.served.target]

    code, out, shown = await crm("reports", "flow", "win-back", *target)
    assert (code, out) == (0, "")
    step = line_of(shown, "first-email")
    assert step[1:10] == ["2", "2", "1", "1", "1", "1", "0", "1", "42.50 EUR"]
    assert step[10:] == ["100.0%", "100.0%", "100.0%"]
    assert line_of(shown, "total")[1:4] == ["2", "2", "1"]
    assert "last click, 5 days" in shown

    code, out, _ = await crm("reports", "flow", flow_id, "--json", *target)
    [report] = [orjson.loads(line) for line in out.splitlines()]
    assert code == 0
    for day in report["days"]:  # each a line of the days' table
        assert line_of(shown, day["day_start_time"][:10])[1] == str(day["sent"])
    assert sum(day["sent"] for day in report["days"]) == 2
    assert [r["step_id"] for r in report["rows"]] == ["first-email"]
    assert report["total"]["revenue"] == [{"currency": "EUR", "amount_minor": 4250}]
    assert report["attribution"] == {"window_days": 5.0, "touch": "click"}

    later = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out, _ = await crm("reports", "flow", flow_id, "--from", later, "--json", *target)
    assert code == 0 and orjson.loads(out)["days"] == []

    code, _, shown = await crm("reports", "campaign", CAMPAIGN, *target)
    assert code == 0 and line_of(shown, "b")[1:3] == ["1", "1"]
    code, _, shown = await crm("reports", "template", TEMPLATE, *target)
    assert code == 1 and "TEMPLATE_NOT_FOUND" in shown  # no such template (nor api message)


async def test_failures(reports: Reports) -> None:
    target = ["--target", reports.served.target]
    code, _, errors = await crm("reports", "flow", "nope", *target)
    assert code == 1 and "FLOW_NOT_FOUND" in errors
    code, out, _ = await crm("reports", "flow", "nope", "--json", *target)
    assert code == 1 and orjson.loads(out)["error"]["reason"] == "FLOW_NOT_FOUND"
    code, _, errors = await crm("reports", "flow", "nope", "--from", "yesterday", *target)
    assert code == 2 and "--from" in errors
    code, _, errors = await crm("reports", "campaign", "not-an-id", *target)
    assert code == 2 and "INVALID_CAMPAIGN_ID" in errors
