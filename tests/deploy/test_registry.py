"""What a registered service must bring besides its code: a canvas, a deploy base listed in the
base kustomization, compose entries for its roles, and a spec that `make run` can start."""

from __future__ import annotations

import pytest

from services.registry import SERVICES
from shared.service import ServiceSpec
from tests.deploy.test_manifests import BASE, COMPOSE, ROOT, load_yaml


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_a_registered_service_has_a_canvas(spec: ServiceSpec) -> None:
    canvas = ROOT / "services" / spec.name / "README.md"
    assert canvas.is_file(), f"services/{spec.name}/README.md: the service canvas"
    text = canvas.read_text()
    for heading in ("## API", "## Events published", "## Events consumed", "## Read model"):
        assert heading in text, f"{canvas}: section {heading!r}"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_a_registered_service_has_a_deploy_base(spec: ServiceSpec) -> None:
    folder = BASE / spec.name
    assert (folder / "kustomization.yaml").is_file(), f"deploy/k8s/base/{spec.name}/"
    resources = load_yaml(BASE / "kustomization.yaml").get("resources", [])
    assert spec.name in resources or f"{spec.name}/" in resources


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_a_registered_service_has_compose_entries(spec: ServiceSpec) -> None:
    services = load_yaml(COMPOSE)["services"]
    for role in spec.roles:
        assert f"{spec.name}-{role}" in services, f"docker-compose.yml: {spec.name}-{role}"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_make_run_knows_every_role(spec: ServiceSpec) -> None:
    assert set(spec.dev) == set(spec.roles), "each role needs its make-run ports (spec.dev)"
    assert {"serve", "project"} <= set(spec.roles)
