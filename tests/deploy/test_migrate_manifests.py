"""Migrations in a deployment: one Job (and one compose service) runs `python -m services.migrate`
with the roles' image, database and configuration; the roles never migrate (MIGRATE_ON_START
false), wait unready for it, and are not restarted while they wait."""

from __future__ import annotations

from typing import Any

import pytest

from services.registry import SERVICES
from shared.settings import Settings
from tests.deploy.test_manifests import (
    COMPOSE,
    TARGETS,
    Manifest,
    containers,
    deployments,
    env_of,
    load_yaml,
    of_kind,
    render,
)

MIGRATE_ARGV = ["python", "-m", "services.migrate"]


@pytest.fixture(params=sorted(TARGETS), scope="module")
def rendered(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    docs = render(TARGETS[request.param])
    if docs is None:
        pytest.skip(f"overlay {request.param}: no kustomize/kubectl to render it")
    return docs


def migrate_job(docs: tuple[Manifest, ...]) -> Manifest:
    jobs = [
        job
        for job in of_kind(docs, "Job")
        for container in job["spec"]["template"]["spec"]["containers"]
        if container.get("command", ["python", "-m"]) + container.get("args", []) == MIGRATE_ARGV
    ]
    assert len(jobs) == 1, f"expected one Job running {MIGRATE_ARGV}, found {len(jobs)}"
    return jobs[0]


def env_sources(container: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    env = {e["name"]: e for e in container.get("env", [])}
    config_maps = {e["configMapRef"]["name"] for e in container.get("envFrom", [])}
    return env, config_maps


def test_one_job_migrates_with_the_roles_image_database_and_configuration(
    rendered: tuple[Manifest, ...],
) -> None:
    job = migrate_job(rendered)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    images = {c["image"] for d, _, _ in deployments(rendered) for c in containers(d)}
    assert images == {container["image"]}, "the Job must migrate for the release it precedes"
    env, config_maps = env_sources(container)
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "crm-database",
        "key": "url",
    }
    assert "crm-config" in config_maps  # EVENTSTORE_BACKEND decides whether the store is here
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    assert job["spec"]["backoffLimit"] >= 1, "the database may still be starting"
    assert job["spec"]["activeDeadlineSeconds"] > 0
    for deployment, _, _ in deployments(rendered):  # the overlays' namespace applies to it too
        assert job["metadata"].get("namespace") == deployment["metadata"].get("namespace")


def test_the_job_is_locked_down_like_the_roles(rendered: tuple[Manifest, ...]) -> None:
    pod = migrate_job(rendered)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"] in empty_dirs
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) >= {"cpu", "memory"}


def test_the_job_is_created_anew_for_each_release(rendered: tuple[Manifest, ...]) -> None:
    """A Job's pod template cannot change: the GitOps tools must create it anew each release.
    A Sync hook, not PreSync: a PreSync Job would wait for crm-config, which the sync applies
    only after it, forever on a first install."""
    annotations = migrate_job(rendered)["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert annotations["kustomize.toolkit.fluxcd.io/force"] == "enabled"


def test_no_role_migrates_at_start(rendered: tuple[Manifest, ...]) -> None:
    for deployment, _, _ in deployments(rendered):
        env = env_of(rendered, deployment["metadata"]["name"])
        settings = Settings.model_validate({"migrate_on_start": env["MIGRATE_ON_START"]})
        assert settings.migrate_on_start is False, deployment["metadata"]["name"]


def test_waiting_for_the_job_never_gets_a_pod_restarted(rendered: tuple[Manifest, ...]) -> None:
    """Only readiness follows the database and the migrations; the startup and liveness probes
    ask for the liveness name, SERVING as long as the process runs."""
    for deployment, _, _ in deployments(rendered):
        for container in containers(deployment):
            for probe in ("startupProbe", "livenessProbe"):
                assert container[probe]["grpc"].get("service") == "liveness", (
                    f"{deployment['metadata']['name']} {probe}"
                )


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_migrates_once_before_the_roles_start() -> None:
    services = load_yaml(COMPOSE)["services"]
    (name,) = [n for n, s in services.items() if s.get("command") == ["services.migrate"]]
    migrate = services[name]
    assert migrate["restart"] == "no", "a one-shot: `unless-stopped` would run it forever"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["healthcheck"] == {"disable": True}
    for spec in SERVICES:
        for role in spec.roles:
            service = services[f"{spec.name}-{role}"]
            if role in spec.process_roles():  # no database: it waits for no migration
                assert "migrate" not in service["depends_on"]
                assert "DATABASE_URL" not in service["environment"]
                continue
            assert service["depends_on"][name]["condition"] == "service_completed_successfully"
            assert service["environment"]["MIGRATE_ON_START"] == "false"
            assert service["environment"]["DATABASE_URL"] == migrate["environment"]["DATABASE_URL"]
