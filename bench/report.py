"""The table on stdout and bench/results/latest.json."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from bench.common import Metric

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _num(v: float) -> str:
    if math.isnan(v):
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def table(metrics: list[Metric]) -> Table:
    t = Table(title="make bench (ratios = value / baseline measured in the same run)")
    for col in ("name", "value", "unit", "baseline", "ratio", "goal", "met?"):
        t.add_column(col, justify="left" if col in ("name", "unit", "goal") else "right")
    for m in metrics:
        goal = m.goal
        met = goal.met(m) if goal else None
        mark = "-" if met is None else ("[green]yes[/]" if met else "[red]no[/]")
        t.add_row(
            m.name,
            _num(m.value),
            m.unit,
            _num(m.baseline),
            "-" if math.isnan(m.ratio) else f"{m.ratio:.2f}",
            goal.text() if goal else "-",
            mark,
        )
    return t


def write(metrics: list[Metric], info: dict[str, Any]) -> Path:
    # A BENCH_ONLY subset must not replace the last full table.
    path = RESULTS.with_name("partial.json") if os.environ.get("BENCH_ONLY") else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"metrics": [m.as_json() for m in metrics], **info}
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    return path


def show(metrics: list[Metric], notes: list[str]) -> None:
    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console = Console(width=120)
    console.print(table(metrics))
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False)
