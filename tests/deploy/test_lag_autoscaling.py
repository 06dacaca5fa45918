"""The opt-in KEDA component of the prod overlay (deploy/k8s/overlays/prod/lag-autoscaling): a
ScaledObject that scales a project role on crm_projection_lag_seconds, well-formed for KEDA, and
no larger than the number of projections that role can lead (one leader per projection)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import check_queries, names_in
from tests.deploy.test_manifests import (
    K8S,
    ROOT,
    TARGETS,
    Manifest,
    kustomize_argv,
    load_yaml,
    named,
    of_kind,
    render,
)

COMPONENT = K8S / "overlays" / "prod" / "lag-autoscaling"
DISABLED = "# components:\n#   - lag-autoscaling"  # what the prod kustomization says to uncomment
# What KEDA 2.x accepts (ScaledObject spec; the prometheus scaler's metadata).
SPEC_FIELDS = {
    "scaleTargetRef",
    "minReplicaCount",
    "maxReplicaCount",
    "idleReplicaCount",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "fallback",
    "advanced",
    "triggers",
}
PROMETHEUS_FIELDS = {
    "serverAddress",
    "query",
    "threshold",
    "activationThreshold",
    "namespace",
    "customHeaders",
    "ignoreNullValues",
    "queryParameters",
    "unsafeSsl",
}


def scaled_objects() -> list[dict[str, Any]]:
    kustomization = load_yaml(COMPONENT / "kustomization.yaml")
    assert kustomization["kind"] == "Component"
    docs = [
        doc
        for entry in kustomization["resources"]
        for doc in yaml.safe_load_all((COMPONENT / entry).read_text(encoding="utf-8"))
        if doc
    ]
    found = [doc for doc in docs if doc["kind"] == "ScaledObject"]
    assert found, f"{COMPONENT}: no ScaledObject"
    return found


def lag_projections(scaled: dict[str, Any]) -> set[str]:
    """The projections whose lag the trigger's query reads (its projection=~ matcher)."""
    (trigger,) = scaled["spec"]["triggers"]
    (selector,) = names_in(trigger["metadata"]["query"]).selectors
    assert selector.metric == "crm_projection_lag_seconds"
    values = [v for label, op, v in selector.matchers if label == "projection" and op == "=~"]
    assert values, "the query must name the projections of the role it scales"
    return set(values[0].split("|"))


def declared_names(service: str) -> set[str]:
    """Names the service's code gives its projections, reactors and engines (`name = "..."`)."""
    names: set[str] = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        if "tests" not in path.parts:
            names |= set(re.findall(r'^\s+name = "([a-z0-9-]+)"', path.read_text(), re.M))
    return names


@pytest.mark.parametrize("scaled", scaled_objects(), ids=lambda s: str(s["metadata"]["name"]))
def test_the_scaled_object_is_what_keda_accepts(scaled: dict[str, Any]) -> None:
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= SPEC_FIELDS, set(spec) - SPEC_FIELDS
    target = spec["scaleTargetRef"]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment")) == (
        "apps/v1",
        "Deployment",
    )
    assert isinstance(spec["minReplicaCount"], int) and isinstance(spec["maxReplicaCount"], int)
    assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"], "keep a standby; scale above it"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger.get("metricType", "AverageValue") in {"AverageValue", "Value"}
    metadata = trigger["metadata"]
    assert set(metadata) <= PROMETHEUS_FIELDS, set(metadata) - PROMETHEUS_FIELDS
    assert all(isinstance(value, str) for value in metadata.values()), "KEDA wants strings"
    assert re.match(r"https?://[^/\s]+", metadata["serverAddress"])
    assert float(metadata["threshold"]) > 0


@pytest.mark.parametrize("scaled", scaled_objects(), ids=lambda s: str(s["metadata"]["name"]))
def test_it_scales_a_project_role_no_further_than_its_leaders(scaled: dict[str, Any]) -> None:
    """One leader per projection: replicas beyond the projections a role runs only stand by."""
    service, _, role = scaled["spec"]["scaleTargetRef"]["name"].rpartition("-")
    assert role == "project", "the serve roles scale on CPU (their HPAs)"
    projections = lag_projections(scaled)
    unknown = projections - declared_names(service)
    assert not unknown, f"{service} runs no projection named {unknown}"
    assert scaled["spec"]["maxReplicaCount"] <= len(projections)


def test_the_trigger_query_parses(tmp_path: Path) -> None:
    queries = {
        s["metadata"]["name"]: t["metadata"]["query"]
        for s in scaled_objects()
        for t in s["spec"]["triggers"]
    }
    check_queries(queries, tmp_path)


def test_prod_needs_no_keda_unless_asked() -> None:
    prod = render(TARGETS["prod"])
    if prod is None:
        pytest.skip("no kustomize/kubectl to render the overlay")
    assert not of_kind(prod, "ScaledObject")
    assert DISABLED in (TARGETS["prod"] / "kustomization.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def enabled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, ...]:
    """prod rendered with the component enabled, as an operator would: on a copy of deploy/k8s
    whose prod kustomization has the comment uncommented."""
    argv = kustomize_argv()
    if argv is None:
        pytest.skip("no kustomize/kubectl to render the overlay")
    root = tmp_path_factory.mktemp("deploy") / "k8s"
    shutil.copytree(K8S, root)
    kustomization = root / "overlays" / "prod" / "kustomization.yaml"
    text = kustomization.read_text(encoding="utf-8")
    kustomization.write_text(text.replace(DISABLED, "components:\n  - lag-autoscaling"))
    out = subprocess.run([*argv, str(kustomization.parent)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def test_enabled_keda_owns_the_replica_count(enabled: tuple[Manifest, ...]) -> None:
    base = render(TARGETS["base"])
    assert base is not None
    for scaled in of_kind(enabled, "ScaledObject"):
        name = scaled["spec"]["scaleTargetRef"]["name"]
        deployment = named(enabled, "Deployment", name)
        assert scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        assert "replicas" not in deployment["spec"], "a fixed count would fight KEDA's HPA"
        hpas = of_kind(enabled, "HorizontalPodAutoscaler")
        assert name not in {h["spec"]["scaleTargetRef"]["name"] for h in hpas}, "two autoscalers"
        # No fewer replicas than the base runs without it (availability: a standby).
        floor = named(base, "Deployment", name)["spec"]["replicas"]
        assert scaled["spec"]["minReplicaCount"] >= floor
    assert len(of_kind(enabled, "ScaledObject")) == len(scaled_objects())
