"""The notifications delivery workers (a ProcessRole) in every way the suite runs: their own
Deployment, HPA, PDB and Service in Kubernetes, without a database; the notifications roles
told where they are (DELIVERY_URL) and admitted to them; their settings spelt as the worker
reads them; compose and `make run` alike."""

from __future__ import annotations

import pytest

from services.notifications.app import NotificationsSettings
from services.notifications.delivery.settings import DeliverySettings
from services.registry import SERVICES as REGISTRY
from tests.deploy.test_manifests import (
    COMPOSE,
    GRPC_PORT,
    Manifest,
    admitting_peers,
    containers,
    docs,
    env_of,
    load_yaml,
    named,
    peer_admits,
    pod_labels,
    published,
    selects,
)

__all__ = ["docs"]  # the rendered-manifests fixture, used below
KNOWN = {name.upper() for name in DeliverySettings.model_fields}


def test_the_registry_declares_the_delivery_role_as_its_own_program() -> None:
    (spec,) = [s for s in REGISTRY if s.name == "notifications"]
    assert {r: p.module for r, p in spec.process_roles().items()} == {
        "delivery": "services.notifications.delivery"
    }


def test_the_workers_run_apart_without_a_database(docs: tuple[Manifest, ...]) -> None:
    deployment = named(docs, "Deployment", "notifications-delivery")
    (container,) = containers(deployment)
    env = {e["name"]: e for e in container["env"]}
    assert "DATABASE_URL" not in env and "PAGE_TOKEN_SECRET" not in env
    assert named(docs, "HorizontalPodAutoscaler", "notifications-delivery")
    assert named(docs, "PodDisruptionBudget", "notifications-delivery")
    # Credentials from a Secret, never literals.
    for name in ("SMTP_PASSWORD", "SMS_AUTH_TOKEN", "WEBHOOK_SECRET"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "notifications-delivery"
    # Every setting it is given is one the worker reads (a misspelt one would be ignored).
    given = set(env) | set(named(docs, "ConfigMap", "notifications-delivery-config")["data"])
    assert given <= KNOWN | {"CRM_TOKENS_FILE"}, given - KNOWN
    DeliverySettings.model_validate(  # the values parse
        {k.lower(): v for k, v in env_of(docs, "notifications-delivery").items() if k in KNOWN}
    )


def test_the_notifications_roles_reach_the_workers(docs: tuple[Manifest, ...]) -> None:
    service = named(docs, "Service", "notifications-delivery")
    assert selects(service["spec"]["selector"], pod_labels(docs, "notifications-delivery"))
    for role in ("serve", "project"):
        assert not selects(service["spec"]["selector"], pod_labels(docs, f"notifications-{role}"))
        env = env_of(docs, f"notifications-{role}")
        host, _, port = env["DELIVERY_URL"].rpartition(":")
        assert host == "notifications-delivery"
        assert int(port) in [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
        NotificationsSettings(delivery_url=env["DELIVERY_URL"])
        peers = admitting_peers(docs, pod_labels(docs, "notifications-delivery"), GRPC_PORT)
        client = pod_labels(docs, f"notifications-{role}")
        assert any(peer_admits(p, client) for p in peers if p.get("podSelector"))


@pytest.fixture(scope="module")
def compose() -> Manifest:
    loaded = load_yaml(COMPOSE)
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_the_workers_without_a_database(compose: Manifest) -> None:
    services = compose["services"]
    worker = services["notifications-delivery"]
    assert worker["command"] == ["services.notifications", "delivery"]
    env = worker["environment"]
    assert "DATABASE_URL" not in env
    assert set(worker["depends_on"]).isdisjoint({"postgres", "migrate"})
    assert set(env) <= KNOWN | {"CRM_TOKENS_FILE", "CRM_TOKENS"}, set(env) - KNOWN
    smtp = env["SMTP_HOST"]
    assert smtp in services and smtp in worker["depends_on"]
    assert published(worker)[GRPC_PORT] == 50254
    assert all(
        str(p).startswith("127.0.0.1:") for p in worker["ports"] if str(p).endswith(":50051")
    )
    for role in ("serve", "project"):
        caller = services[f"notifications-{role}"]["environment"]
        host, _, port = caller["DELIVERY_URL"].rpartition(":")
        assert host == "notifications-delivery" and port == env["GRPC_PORT"]
