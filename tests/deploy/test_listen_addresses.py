"""Where the processes listen: loopback unless told otherwise (a developer's `make run` exposes
nothing), every interface inside a container (the image, compose and every Deployment say so)."""

from __future__ import annotations

import re

import pytest

from shared.settings import Settings
from tests.deploy.test_manifests import (
    COMPOSE,
    ROOT,
    SERVICES,
    Manifest,
    containers,
    deployments,
    docs,
    load_yaml,
)

__all__ = ["docs"]  # the rendered-manifests fixture, used below
ANY = "0.0.0.0"  # noqa: S104 - what containers must bind


def test_processes_listen_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRPC_HOST", "METRICS_HOST"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.grpc_host == "127.0.0.1"
    assert settings.metrics_host == "127.0.0.1"


def test_the_image_listens_on_every_interface() -> None:
    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text()
    assert re.search(r"\bGRPC_HOST=0\.0\.0\.0\b", dockerfile)
    assert re.search(r"\bMETRICS_HOST=0\.0\.0\.0\b", dockerfile)


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("role", ["serve", "project"])
def test_compose_services_listen_on_every_interface(name: str, role: str) -> None:
    env = load_yaml(COMPOSE)["services"][f"{name}-{role}"]["environment"]
    assert env["GRPC_HOST"] == ANY and env["METRICS_HOST"] == ANY


def test_deployments_listen_on_every_interface(docs: tuple[Manifest, ...]) -> None:
    for deployment, _, _ in deployments(docs):
        for container in containers(deployment):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("GRPC_HOST") == ANY, deployment["metadata"]["name"]
            assert env.get("METRICS_HOST") == ANY, deployment["metadata"]["name"]
