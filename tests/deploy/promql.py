"""What the deploy tests need to check PromQL written for the suite (alert rules, the Grafana
dashboard, autoscaler triggers): promtool, the series shared/metrics.py really exports, and a
rough reader of the metric and label names an expression uses.

promtool comes from Debian's `prometheus` package (.ci/run extracts it to /usr/local/bin) or from
CRM_PROMTOOL. Without it the promtool checks skip, saying so; CRM_REQUIRE_PROMTOOL=1 (as CI
sets) makes them fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics

# Labels a scrape adds to every series (Prometheus itself, or the usual Kubernetes relabelling).
TARGET_LABELS = frozenset({"instance", "job", "namespace", "pod", "container", "service"})
# Grafana's interval variables, and what they stand for when promtool parses a query.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# Label values the suite defines: a query keying on another value would never match anything.
KNOWN_VALUES = {
    "grpc_code": frozenset(code.name for code in grpc.StatusCode),
    "outcome": frozenset(metrics.NOTIFICATION_OUTCOMES),
}
_CLAUSES = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk"}
_AGGREGATIONS |= {"bottomk", "quantile", "count_values"}  # may be followed by by/without
_KEYWORDS = _CLAUSES | _AGGREGATIONS | {"and", "or", "unless", "offset", "bool", "inf", "nan"}
_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<range>\[[^\]]*\])
      | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]?)
      | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
      | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>])
      | (?P<space>\s+)""",
    re.VERBOSE,
)


# --- what shared/metrics.py exports ------------------------------------------------------------


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the suite's metrics expose -> the labels it carries."""
    series: dict[str, frozenset[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, kind = value._name, value._type
        labels = frozenset(value._labelnames)
        if kind == "counter":
            series[f"{name}_total"] = labels
        elif kind == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = series[f"{name}_count"] = labels
        else:
            series[name] = labels
    return series


# --- reading PromQL ----------------------------------------------------------------------------


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)  # label, op, value


@dataclass
class Names:
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)  # by / without / on / ignoring labels


def _tokens(expr: str) -> Iterator[tuple[str, str]]:
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        assert match, f"cannot read {expr[position:]!r} in {expr!r}"
        position = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            yield kind, match.group()


def names_in(expr: str) -> Names:
    """The metric selectors (with their matchers) and grouping labels of ``expr``: rough, but
    enough for the queries the suite writes (functions are names followed by a parenthesis)."""
    for variable, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, value)
    tokens = list(_tokens(expr))
    found = Names()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        after = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "name" and text in _CLAUSES and after == "(":
            i += 2
            while tokens[i][1] != ")":
                if tokens[i][0] == "name":
                    found.grouping.add(tokens[i][1])
                i += 1
        elif kind == "name" and text == "offset":
            i += 1  # its duration
        elif kind == "name" and text not in _KEYWORDS and after != "(":
            selector = Selector(text)
            if after == "{":
                i += 2
                while tokens[i][1] != "}":
                    if tokens[i][0] == "name":
                        label, op, value = tokens[i][1], tokens[i + 1][1], tokens[i + 2][1]
                        selector.matchers.append((label, op, value[1:-1]))
                        i += 2
                    i += 1
            found.selectors.append(selector)
        i += 1
    return found


def problems(expr: str, series: dict[str, frozenset[str]] | None = None) -> list[str]:
    """What in ``expr`` names a series, a label or a label value the suite does not export."""
    series = exported_series() if series is None else series
    found = names_in(expr)
    wrong: list[str] = []
    usable = set(TARGET_LABELS)
    for selector in found.selectors:
        if selector.metric not in series:
            wrong.append(f"no series {selector.metric} in shared/metrics.py")
            continue
        labels = series[selector.metric] | TARGET_LABELS
        usable |= labels
        for label, op, value in selector.matchers:
            if label not in labels:
                wrong.append(f"{selector.metric} has no label {label}")
            elif label in KNOWN_VALUES and "$" not in value:
                values = set(value.split("|")) if op in ("=~", "!~") else {value}
                unknown = values - KNOWN_VALUES[label] - {".*", ".+"}
                if unknown:
                    wrong.append(f"{label} is never {sorted(unknown)}")
    wrong += [f"no metric of the query has label {label}" for label in found.grouping - usable]
    return wrong


def label_values_query(query: str) -> tuple[str, str]:
    """(metric, label) of a Grafana ``label_values(metric, label)`` variable query."""
    match = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*(\w+)\s*\)\s*", query)
    assert match, f"expected label_values(metric, label), got {query!r}"
    return match[1], match[2]


# --- promtool ----------------------------------------------------------------------------------


def promtool() -> str:
    """promtool's path, or skip (fail when CRM_REQUIRE_PROMTOOL is set)."""
    found = os.environ.get("CRM_PROMTOOL") or shutil.which("promtool")
    if found:
        return found
    reason = (
        "promtool not found: install Debian's `prometheus` package (or extract its promtool as "
        ".ci/run does), or set CRM_PROMTOOL"
    )
    if os.environ.get("CRM_REQUIRE_PROMTOOL"):
        pytest.fail(f"CRM_REQUIRE_PROMTOOL is set but {reason}")
    pytest.skip(reason)


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def check_queries(queries: dict[str, str], scratch: Path) -> None:
    """Parse every query with Prometheus' own parser: as recording rules for `promtool check
    rules` (names are `<key>` made safe), after replacing Grafana's variables."""
    rules = []
    for key, expr in queries.items():
        for variable, value in GRAFANA_INTERVALS.items():
            expr = expr.replace(variable, value)
        expr = re.sub(r"\$\{?\w+\}?", ".*", expr)  # a dashboard variable stands in a regex
        rules.append({"record": "check:" + re.sub(r"[^a-zA-Z0-9_:]", "_", key), "expr": expr})
    path = scratch / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    result = run_promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
