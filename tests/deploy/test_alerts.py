"""The Prometheus alert rules (deploy/prometheus/alerts.yaml): valid for promtool, proven by
promtool unit tests to fire on broken series and stay silent on healthy ones, and each telling
the operator what happened and where the runbook is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.promql import TARGET_LABELS, exported_series, names_in, run_promtool
from tests.deploy.test_manifests import ROOT, load_yaml

RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
UNIT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
# Codes that are the server's own failure; everything else is about the caller's request.
SERVER_SIDE = {"UNKNOWN", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS"}
CALLER_SIDE = {
    "OK",
    "CANCELLED",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "RESOURCE_EXHAUSTED",  # shed load: the caller retries with backoff
}


def alert_rules() -> list[dict[str, Any]]:
    rules = [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]
    alerts = [rule for rule in rules if "alert" in rule]
    assert alerts, f"{RULES}: no alert rules"
    return alerts


def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_show_every_alert_firing_and_silent() -> None:
    """promtool passes a test of an alert that does not exist (nothing fires, as expected): so
    every alert the tests name must exist, and every alert must be shown both ways."""
    unit = load_yaml(UNIT_TESTS)
    assert [(UNIT_TESTS.parent / f).resolve() for f in unit["rule_files"]] == [RULES.resolve()]
    firing: set[str] = set()
    silent: set[str] = set()
    for test in unit["tests"]:
        assert test["input_series"], test["name"]
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert (firing | silent) <= names, f"tests of unknown alerts: {(firing | silent) - names}"
    assert names <= firing, f"never shown firing: {names - firing}"
    assert names <= silent, f"never shown silent: {names - silent}"


def anchors(markdown: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_says_what_happened_and_where_the_runbook_is(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"Crm[A-Z]\w+", rule["alert"]), "alerts are named CrmSomething"
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert set(annotations) >= {"summary", "description", "runbook_url"}
    assert "{{" in annotations["summary"], "the summary names what is affected"
    page, _, anchor = annotations["runbook_url"].partition("#")
    assert (ROOT / page).resolve() == RUNBOOK.resolve(), annotations["runbook_url"]
    assert anchor in anchors(RUNBOOK), f"{RUNBOOK} has no section #{anchor}"
    # Each label the annotations print is one the alert's series keep.
    printed = set(re.findall(r"\$labels\.(\w+)", " ".join(annotations.values())))
    found, series = names_in(rule["expr"]), exported_series()
    # Without aggregation, a series keeps its own labels and the scrape's.
    kept = found.grouping or TARGET_LABELS.union(*(series[s.metric] for s in found.selectors))
    assert printed <= kept | set(rule["labels"]), printed - kept


def server_error_codes(expr: str) -> set[str]:
    codes = [
        value
        for selector in names_in(expr).selectors
        for label, op, value in selector.matchers
        if label == "grpc_code" and op == "=~"
    ]
    assert codes, f"no grpc_code matcher in {expr}"
    return set(codes[0].split("|"))


def test_the_grpc_error_alert_counts_only_the_servers_own_errors() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "CrmGrpcServerErrors"]
    assert server_error_codes(rule["expr"]) == SERVER_SIDE
    assert not SERVER_SIDE & CALLER_SIDE
