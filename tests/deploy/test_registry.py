"""What a registered service must bring besides its code: a canvas, a deploy base listed in the
base kustomization, compose entries for its roles, and a spec that `make run` can start."""

from __future__ import annotations

import tomllib

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


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_a_registered_service_is_under_the_import_rules(spec: ServiceSpec) -> None:
    """The layers, the pure domain and the independence contracts name every service."""
    package = f"services.{spec.name}"
    by_type: dict[str, list[dict[str, object]]] = {}
    for c in _contracts():
        by_type.setdefault(str(c["type"]), []).append(c)
    assert any(package in c["containers"] for c in by_type["layers"]), "layers: containers"  # type: ignore[operator]
    assert any(f"{package}.domain" in c["source_modules"] for c in by_type["forbidden"])  # type: ignore[operator]
    assert any(package in c["modules"] for c in by_type["independence"]), "independence"  # type: ignore[operator]
