"""The Grafana dashboard (deploy/grafana/crm-suite.json): provisionable as a file, every panel on
the Prometheus data source the viewer picks, every query valid PromQL, and every metric the suite
exports shown somewhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.promql import check_queries, exported_series, label_values_query, names_in
from tests.deploy.test_alerts import SERVER_SIDE, alert_rules, server_error_codes
from tests.deploy.test_manifests import ROOT, load_yaml

DASHBOARD = ROOT / "deploy" / "grafana" / "crm-suite.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards.yaml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

Panel = dict[str, Any]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def graphs(dashboard: dict[str, Any]) -> list[Panel]:
    """The panels that query something (rows only group them)."""
    found = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert found, "no panels"
    return found


def queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """panel title / refId -> PromQL expression."""
    return {
        f"{panel['title']} / {target['refId']}": target["expr"]
        for panel in graphs(dashboard)
        for target in panel["targets"]
    }


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_dashboard_is_provisionable(dashboard: dict[str, Any]) -> None:
    """A fixed uid (links survive re-provisioning), no numeric id (Grafana assigns it), and the
    data source chosen by a variable rather than a uid of someone else's Grafana."""
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert dashboard["title"]
    assert dashboard.get("id") is None
    assert dashboard["schemaVersion"] >= 36
    source = variables(dashboard)["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    assert "__inputs" not in dashboard, "an export for sharing, not a provisionable file"


def test_every_panel_queries_the_chosen_prometheus(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in graphs(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["title"] and panel.get("description"), panel["id"]
        targets = panel["targets"]
        assert targets, f"{panel['title']}: no query"
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
            if target["legendFormat"] != "__auto":  # a legend names only labels the query keeps
                shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target["legendFormat"]))
                kept = names_in(target["expr"]).grouping
                assert shown <= kept, f"{panel['title']}: legend {shown - kept} is always empty"


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def family(series: str) -> str:
    return re.sub(r"_(total|bucket|sum|count)$", "", series)


def test_dashboard_shows_every_exported_metric(dashboard: dict[str, Any]) -> None:
    """A metric added to shared/metrics.py needs a panel (or it is one nobody looks at)."""
    shown = {
        family(selector.metric)
        for expr in queries(dashboard).values()
        for selector in names_in(expr).selectors
    }
    exported = {family(series) for series in exported_series()}
    assert exported <= shown, f"not on the dashboard: {sorted(exported - shown)}"


def test_latency_percentiles_per_service_and_method(dashboard: dict[str, Any]) -> None:
    for quantile in ("0.5", "0.99"):
        matching = [
            expr
            for expr in queries(dashboard).values()
            if re.search(rf"histogram_quantile\(\s*{re.escape(quantile)}\s*,", expr)
            and "grpc_server_handling_seconds_bucket" in expr
        ]
        assert matching, f"no p{quantile} of grpc_server_handling_seconds"
        assert names_in(matching[0]).grouping == {"le", "grpc_service", "grpc_method"}


def test_dashboard_and_alert_agree_on_server_errors(dashboard: dict[str, Any]) -> None:
    (panel,) = [p for p in graphs(dashboard) if "error ratio" in p["title"].lower()]
    assert server_error_codes(panel["targets"][0]["expr"]) == SERVER_SIDE
    (rule,) = [r for r in alert_rules() if r["alert"] == "CrmGrpcServerErrors"]
    assert server_error_codes(rule["expr"]) == SERVER_SIDE


def test_variables_are_defined_used_and_real(dashboard: dict[str, Any]) -> None:
    defined = variables(dashboard)
    used = set(re.findall(r"\$(\w+)", " ".join(queries(dashboard).values()))) - {"__rate_interval"}
    assert used <= set(defined), f"undefined variables: {used - set(defined)}"
    series = exported_series()
    for name, variable in defined.items():
        if variable["type"] != "query":
            continue
        assert name in used, f"variable {name} filters nothing"
        assert variable["datasource"] == DATASOURCE
        metric, label = label_values_query(variable["definition"])
        assert label in series[metric], f"{metric} has no label {label}"
        assert variable["query"]["query"] == variable["definition"]


def test_every_query_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    check_queries(queries(dashboard), tmp_path)


def test_grafana_provisioning_points_at_a_file_provider() -> None:
    provisioning = load_yaml(PROVISIONING)
    assert provisioning["apiVersion"] == 1
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
