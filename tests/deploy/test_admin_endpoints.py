"""Where operators reach each project role's Admin API: a Service per project role in
Kubernetes (listing unready pods too), a loopback port in compose, and under `make run` the
port the `crm` command looks at by default — all following the registry."""

from __future__ import annotations

import pytest

from services.cli_admin import admin_targets
from services.registry import SERVICES as REGISTRY
from shared.service import ServiceSpec
from tests.deploy.test_manifests import (
    COMPOSE,
    GRPC_PORT,
    SERVICES,
    Manifest,
    containers,
    docs,
    load_yaml,
    named,
    published,
    selects,
)

__all__ = ["docs"]  # the rendered-manifests fixture, used below


@pytest.mark.parametrize("name", SERVICES)
def test_each_project_role_has_an_admin_service(docs: tuple[Manifest, ...], name: str) -> None:
    service = named(docs, "Service", f"{name}-project")
    spec = service["spec"]
    assert spec.get("type", "ClusterIP") == "ClusterIP"
    assert spec.get("publishNotReadyAddresses") is True, "reachable while a worker is down"
    project = named(docs, "Deployment", f"{name}-project")
    serve = named(docs, "Deployment", f"{name}-serve")
    assert selects(spec["selector"], project["spec"]["template"]["metadata"]["labels"])
    assert not selects(spec["selector"], serve["spec"]["template"]["metadata"]["labels"])
    (port,) = spec["ports"]
    assert (port["name"], port["port"], port.get("appProtocol")) == ("grpc", GRPC_PORT, "grpc")
    declared = {p.get("name"): p["containerPort"] for p in containers(project)[0]["ports"]}
    assert declared[port["targetPort"]] == GRPC_PORT


@pytest.mark.parametrize("name", SERVICES)
def test_project_roles_sign_admin_page_tokens_with_the_deployment_key(
    docs: tuple[Manifest, ...], name: str
) -> None:
    project = named(docs, "Deployment", f"{name}-project")
    env = {e["name"]: e for e in containers(project)[0].get("env", [])}
    assert env["PAGE_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "crm-page-tokens",
        "key": "secret",
    }


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_compose_publishes_the_admin_api_on_loopback_at_make_run_port(spec: ServiceSpec) -> None:
    name, dev = spec.name, spec.dev["project"]
    service = load_yaml(COMPOSE)["services"][f"{name}-project"]
    assert published(service)[GRPC_PORT] == dev.grpc_port
    admin = [str(p) for p in service["ports"] if str(p).endswith(f":{GRPC_PORT}")]
    assert admin == [f"127.0.0.1:{dev.grpc_port}:{GRPC_PORT}"], "loopback only: no auth yet"


def test_the_crm_command_looks_where_make_run_puts_each_admin_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CRM_ADMIN_TARGETS", raising=False)
    assert admin_targets(None) == {
        spec.name: f"127.0.0.1:{spec.dev['project'].grpc_port}" for spec in REGISTRY
    }
    monkeypatch.setenv("CRM_ADMIN_TARGETS", "orders=10.0.0.7:50051")
    assert admin_targets(["contacts=h:1"])["orders"] == "10.0.0.7:50051"
    assert admin_targets(["contacts=h:1"], "contacts") == {"contacts": "h:1"}


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_each_canvas_says_where_its_admin_api_is(spec: ServiceSpec) -> None:
    text = (COMPOSE.parent / "services" / spec.name / "README.md").read_text()
    assert "crm.admin.v1.AdminService" in text
    assert f"127.0.0.1:{spec.dev['project'].grpc_port}" in text
    assert f"`{spec.name}-project`" in text
