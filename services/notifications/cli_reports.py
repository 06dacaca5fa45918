"""`crm reports flow|campaign|template …`: what a flow's steps, a campaign's variants or a
template's messages did, through the notifications API (ReportsService on the serve role): a
table of rows and their total, then the days; `--json` prints the report as one JSON line."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any

import grpc
import typer
from babel.numbers import get_currency_precision, is_currency
from rich.markup import escape
from rich.table import Table

from crm.notifications.v1 import reports_pb2 as pb
from crm.notifications.v1 import reports_pb2_grpc as pb_grpc
from services.cli_calls import (
    CALL_TIMEOUT,
    Json,
    Token,
    as_json,
    call_failed,
    dial,
    metadata,
    parse_time,
    serve_target,
)
from services.cli_support import emit, print_wide
from services.notifications.cli import GRPC_PORT, Target

app = typer.Typer(
    help="Reports: what a flow's steps, a campaign's variants, a template's messages did.",
    no_args_is_help=True,
)
From = Annotated[
    str | None,
    typer.Option("--from", help="the days shown start with this instant's (RFC 3339, …Z)"),
]
To = Annotated[str | None, typer.Option("--to", help="the days shown end with this one's")]
COLUMNS: tuple[str, ...] = ("recipients", "sent", "delivered", "bounced", "opens", "clicks")
COLUMNS += ("unsubscribes", "conversions", "revenue", "open rate", "click rate")
COLUMNS += ("conversion rate",)


def money(amounts: Sequence[pb.Money]) -> str:
    """'32.00 EUR, 10.00 USD': minor units written in their currency's precision."""
    parts = []
    for m in amounts:
        code = m.currency.upper()
        places = get_currency_precision(code) if is_currency(code) else 0
        parts.append(f"{Decimal(m.amount_minor).scaleb(-places)} {m.currency}")
    return ", ".join(parts)


def _cells(row: pb.ReportRow) -> list[str]:
    counts = [row.recipients, row.sent, row.delivered, row.bounced, row.unique_opens]
    counts += [row.unique_clicks, row.unsubscribes, row.conversions]
    rates = (row.open_rate, row.click_rate, row.conversion_rate)
    return [str(n) for n in counts] + [money(row.revenue)] + [f"{r:.1%}" for r in rates]


def tables(report: pb.Report, what: str, split: str) -> list[Table]:
    """The rows and the total; then the days, when there are any."""
    touch = f"last {report.attribution.touch}, {report.attribution.window_days:g} days"
    rows = Table(title=f"{what} (conversions: {touch})", title_justify="left")
    rows.add_column({"step_id": "step", "variant": "variant"}.get(split, ""))
    for col in COLUMNS:
        rows.add_column(col, justify="right")
    for r in report.rows:
        rows.add_row(escape(getattr(r, split) or "(default)"), *_cells(r))
    rows.add_row("total", *_cells(report.total), style="bold")
    if not report.days:
        return [rows]
    days = Table(title="days (UTC)", title_justify="left")
    for col in ("day", "sent", "opens", "clicks", "conversions", "revenue"):
        days.add_column(col, justify="left" if col == "day" else "right")
    for d in report.days:
        days.add_row(
            f"{d.day_start_time.ToDatetime():%Y-%m-%d}",
            *(str(n) for n in (d.sent, d.unique_opens, d.unique_clicks, d.conversions)),
            money(d.revenue),
        )
    return [rows, days]


def _show(
    method: str, request: Any, what: str, split: str, target: str | None, json_out: bool, token: str
) -> None:
    where = serve_target("notifications", target, f"127.0.0.1:{GRPC_PORT}")
    md = metadata(token)

    async def work() -> pb.Report:
        async with dial(where) as ch:
            stub = pb_grpc.ReportsServiceStub(ch)
            try:
                got = await getattr(stub, method)(request, metadata=md, timeout=CALL_TIMEOUT)
                report: pb.Report = got.report
                return report
            except grpc.aio.AioRpcError as exc:
                call_failed(exc, f"notifications at {where}", json_out)

    report = asyncio.run(work())
    if json_out:
        emit(as_json(report))
        return
    for table in tables(report, what, split):
        print_wide(table)


def _range(since: str | None, until: str | None) -> dict[str, Any]:
    out = {"from_time": parse_time(since, "--from"), "to_time": parse_time(until, "--to")}
    return {k: v for k, v in out.items() if v is not None}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@app.command("flow")
def flow(
    flow: Annotated[str, typer.Argument(help="the flow's id or key")],
    since: From = None,
    until: To = None,
    target: Target = None,
    json_out: Json = False,
    token: Token = "",
) -> None:
    """A flow's report: one row per step, the total, the days."""
    request = pb.GetFlowReportRequest(**_range(since, until))
    if _is_uuid(flow):
        request.flow_id = flow
    else:
        request.key = flow
    _show("GetFlowReport", request, f"flow {flow}", "step_id", target, json_out, token)


@app.command("campaign")
def campaign(
    campaign_id: Annotated[str, typer.Argument(help="the campaign's id")],
    since: From = None,
    until: To = None,
    target: Target = None,
    json_out: Json = False,
    token: Token = "",
) -> None:
    """A campaign's report: one row per variant, the total, the days."""
    request = pb.GetCampaignReportRequest(campaign_id=campaign_id, **_range(since, until))
    what = f"campaign {campaign_id}"
    _show("GetCampaignReport", request, what, "variant", target, json_out, token)


@app.command("template")
def template(
    template_id: Annotated[str, typer.Argument(help="the template's id")],
    since: From = None,
    until: To = None,
    target: Target = None,
    json_out: Json = False,
    token: Token = "",
) -> None:
    """What a template's messages sent through SendMessage did: the total, the days."""
    request = pb.GetTemplateReportRequest(template_id=template_id, **_range(since, until))
    what = f"template {template_id}"
    _show("GetTemplateReport", request, what, "", target, json_out, token)
