"""Every metric, label and label value that the alert rules, the dashboard and the autoscaling
triggers read exists in shared/metrics.py (or is added by the scrape): renaming a metric or a
label, or a code the queries key on, breaks the build instead of silencing an alert."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy.promql import exported_series, label_values_query, names_in, problems
from tests.deploy.test_alerts import alert_rules
from tests.deploy.test_dashboard import DASHBOARD
from tests.deploy.test_manifests import K8S, ROOT


def scaler_queries() -> dict[str, str]:
    """The Prometheus triggers of the KEDA ScaledObjects under deploy/k8s."""
    found = {}
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "ScaledObject":
                for i, trigger in enumerate(doc["spec"]["triggers"]):
                    if trigger["type"] == "prometheus":
                        key = f"{path.relative_to(ROOT)}: {doc['metadata']['name']} #{i}"
                        found[key] = trigger["metadata"]["query"]
    return found


def every_query() -> dict[str, str]:
    found = {f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"panel {panel['title']} / {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = label_values_query(variable["definition"])
            found[f"variable {variable['name']}"] = f"count by ({label}) ({metric})"
    return found | scaler_queries()


@pytest.mark.parametrize(("where", "expr"), sorted(every_query().items()))
def test_the_query_reads_only_what_the_suite_exports(where: str, expr: str) -> None:
    assert names_in(expr).selectors, f"{where}: no metric found in {expr!r}"
    assert problems(expr) == [], where


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("rate(crm_events_appended[5m])", "no series crm_events_appended"),  # the _total
        ("crm_append_seconds", "no series crm_append_seconds"),  # a histogram's family name
        ('max by (projection) (crm_projection_lag_seconds{worker="x"})', "no label worker"),
        ("sum by (grpc_code) (rate(grpc_server_started_total[5m]))", "label grpc_code"),
        ('grpc_server_handled_total{grpc_code=~"INTERNAL|ERROR"}', "never ['ERROR']"),
        ('crm_notifications_sent_total{outcome="bounced"}', "never ['bounced']"),
        ("histogram_quantile(0.99, sum by (le) (rate(crm_append_seconds_sum[5m])))", "label le"),
    ],
)
def test_the_check_catches_a_wrong_name(expr: str, complaint: str) -> None:
    found = problems(expr)
    assert any(complaint in problem for problem in found), found


def test_the_check_reads_what_a_correct_query_uses() -> None:
    expr = (
        'sum by (grpc_service) (rate(grpc_server_handled_total{grpc_code=~"INTERNAL|UNKNOWN"}'
        "[$__rate_interval])) / ignoring (x) group_left sum by (grpc_service) "
        "(rate(grpc_server_handled_total[5m] offset 1h)) > 0.05 and on (grpc_service) "
        "histogram_quantile(0.99, sum by (le, grpc_service) "
        "(rate(grpc_server_handling_seconds_bucket[5m])))"
    )
    found = names_in(expr)
    assert [s.metric for s in found.selectors] == [
        "grpc_server_handled_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
    ]
    assert found.selectors[0].matchers == [("grpc_code", "=~", "INTERNAL|UNKNOWN")]
    assert found.grouping == {"grpc_service", "x", "le"}
    assert problems(expr) == ["no metric of the query has label x"]
    assert "crm_projection_lag_seconds" in exported_series()
