"""Properties of the deploy skeleton: Dockerfile, docker-compose.yml and the Kustomize manifests.

Manifests are rendered with `kustomize build` or `kubectl kustomize` when one is on PATH. Without
either, the base is rendered by a small fallback that only concatenates `resources` (the base uses
nothing else, so the result is the same), and overlays are only checked for well-formedness.
Set CRM_REQUIRE_KUSTOMIZE=1 (as CI should) to fail instead of falling back.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
TARGETS = {"base": BASE, "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
GRPC_PORT = 50051
METRICS_PORT = 9464
# Deployments are named <service>-<role>; the role is the second argument of `python -m`.
DEPLOYMENT_NAME = re.compile(r"^(?P<service>[a-z][a-z0-9]*)-(?P<role>serve|project)$")

Manifest = dict[str, Any]


# --- rendering -------------------------------------------------------------------------------


@functools.cache
def kustomize_argv() -> tuple[str, ...] | None:
    """The command that renders a kustomization, or None when no capable tool is installed."""
    if kustomize := shutil.which("kustomize"):
        return (kustomize, "build")
    if kubectl := shutil.which("kubectl"):
        # kubectl < 1.24 embeds kustomize v2 (no `patches`, no `replicas`) and, unlike newer
        # ones, does not report kustomizeVersion: that is how it is told apart.
        out = subprocess.run(
            [kubectl, "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            info = json.loads(out.stdout)
        except json.JSONDecodeError:
            info = {}
        if info.get("kustomizeVersion"):
            return (kubectl, "kustomize")
    if os.environ.get("CRM_REQUIRE_KUSTOMIZE"):
        pytest.fail("CRM_REQUIRE_KUSTOMIZE is set but no kustomize or kubectl >= 1.24 is on PATH")
    return None


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def fallback_render(directory: Path) -> list[Manifest]:
    """Concatenate a kustomization's `resources`, recursing into directories; nothing else."""
    kustomization = load_yaml(directory / "kustomization.yaml")
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources"}
    assert not unsupported, (
        f"{directory}: the fallback renderer only understands `resources`, found {unsupported}; "
        "install kubectl (>= 1.24) or kustomize"
    )
    docs: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs.extend(fallback_render(path))
        else:
            assert path.is_file(), f"{directory}/kustomization.yaml lists missing {entry}"
            text = path.read_text(encoding="utf-8")
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


@functools.cache
def render(directory: Path) -> tuple[Manifest, ...] | None:
    """Rendered manifests, or None for an overlay when there is nothing to render it with."""
    argv = kustomize_argv()
    if argv is not None:
        out = subprocess.run([*argv, str(directory)], capture_output=True, text=True, check=False)
        assert out.returncode == 0, f"{' '.join(argv)} {directory} failed:\n{out.stderr}"
        return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)
    if directory == BASE:
        return tuple(fallback_render(BASE))
    return None


@pytest.fixture(params=sorted(TARGETS), scope="module")
def docs(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    rendered = render(TARGETS[request.param])
    if rendered is None:
        pytest.skip(f"overlay {request.param}: no kustomize/kubectl, checked for form only")
    return rendered


def of_kind(docs: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc.get("kind") == kind]


def named(docs: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    matches = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def deployments(docs: tuple[Manifest, ...]) -> Iterator[tuple[Manifest, str, str]]:
    """Each Deployment with its service and role, parsed from its name."""
    found = of_kind(docs, "Deployment")
    assert found, "no Deployment rendered"
    for deployment in found:
        match = DEPLOYMENT_NAME.match(deployment["metadata"]["name"])
        assert match, f"Deployment {deployment['metadata']['name']} is not <service>-<role>"
        yield deployment, match["service"], match["role"]


def containers(deployment: Manifest) -> list[Manifest]:
    found: list[Manifest] = deployment["spec"]["template"]["spec"]["containers"]
    assert found, f"{deployment['metadata']['name']} has no containers"
    return found


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- rendered manifests ----------------------------------------------------------------------


def test_both_contacts_roles_are_deployed(docs: tuple[Manifest, ...]) -> None:
    names = {deployment["metadata"]["name"] for deployment, _, _ in deployments(docs)}
    assert {"contacts-serve", "contacts-project"} <= names


def test_deployments_run_their_service_and_role(docs: tuple[Manifest, ...]) -> None:
    for deployment, service, role in deployments(docs):
        for container in containers(deployment):
            # No `command` means the image ENTRYPOINT, which test_dockerfile checks is python -m.
            argv = container.get("command", ["python", "-m"]) + container.get("args", [])
            assert argv == ["python", "-m", f"services.{service}", role], container["name"]


def test_every_container_has_requests_and_limits(docs: tuple[Manifest, ...]) -> None:
    for deployment, _, _ in deployments(docs):
        for container in containers(deployment):
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resources.get(bound, {}).get(resource), (
                        f"{deployment['metadata']['name']}/{container['name']}: "
                        f"no {bound}.{resource}"
                    )


def test_every_container_has_grpc_probes(docs: tuple[Manifest, ...]) -> None:
    for deployment, _, _ in deployments(docs):
        for container in containers(deployment):
            declared = {port["containerPort"] for port in container.get("ports", [])}
            assert {GRPC_PORT, METRICS_PORT} <= declared
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                grpc = container.get(probe, {}).get("grpc", {})
                assert grpc.get("port") == GRPC_PORT, f"{deployment['metadata']['name']} {probe}"
            # liveness must not depend on the database (shared/grpckit/server.py LIVENESS)
            assert container["livenessProbe"]["grpc"].get("service") == "liveness"
            assert container["readinessProbe"]["grpc"].get("service", "") == ""


def test_pods_are_locked_down(docs: tuple[Manifest, ...]) -> None:
    for deployment, _, _ in deployments(docs):
        pod = deployment["spec"]["template"]["spec"]
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("runAsNonRoot") is True
        assert pod_security.get("runAsUser", 0) != 0
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in containers(deployment):
            security = container.get("securityContext", {})
            assert security.get("readOnlyRootFilesystem") is True
            assert security.get("allowPrivilegeEscalation") is False
            assert security.get("capabilities", {}).get("drop") == ["ALL"]
            # A read-only root needs somewhere to write: /tmp, from an emptyDir.
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in empty_dirs


def test_pods_are_labelled_and_scraped(docs: tuple[Manifest, ...]) -> None:
    for deployment, service, role in deployments(docs):
        template = deployment["spec"]["template"]["metadata"]
        assert template["labels"] == {
            "app.kubernetes.io/name": service,
            "app.kubernetes.io/component": role,
            "app.kubernetes.io/part-of": "crm-suite",
        }
        assert selects(deployment["spec"]["selector"]["matchLabels"], template["labels"])
        annotations = template.get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true"
        assert annotations.get("prometheus.io/port") == str(METRICS_PORT)


def test_configuration_comes_from_configmap_and_secret(docs: tuple[Manifest, ...]) -> None:
    config = named(docs, "ConfigMap", "crm-config")["data"]
    assert "LOG_LEVEL" in config
    assert config.get("EVENTSTORE_BACKEND") in {"postgres", "eventstoredb"}
    assert not of_kind(docs, "Secret"), "credentials must not be committed"
    for deployment, _, _ in deployments(docs):
        for container in containers(deployment):
            sources = [e.get("configMapRef", {}).get("name") for e in container.get("envFrom", [])]
            assert "crm-config" in sources
            env = {e["name"]: e for e in container.get("env", [])}
            assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": "crm-database",
                "key": "url",
            }


def test_only_api_deployments_autoscale(docs: tuple[Manifest, ...]) -> None:
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    targets = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas}
    for deployment, _, role in deployments(docs):
        name = deployment["metadata"]["name"]
        if role == "serve":
            assert name in targets, f"no HPA for {name}"
            # The HPA owns the count; a fixed one would be reset by every apply.
            assert "replicas" not in deployment["spec"]
        else:
            assert name not in targets, f"{name} must not autoscale: one runner per projection"
            assert deployment["spec"].get("replicas", 1) >= 1
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        cpu = [m for m in hpa["spec"]["metrics"] if m["resource"]["name"] == "cpu"]
        assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"


def test_every_deployment_has_a_usable_pdb(docs: tuple[Manifest, ...]) -> None:
    pdbs = of_kind(docs, "PodDisruptionBudget")
    hpa_min = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]["minReplicas"]
        for hpa in of_kind(docs, "HorizontalPodAutoscaler")
    }
    for deployment, _, _ in deployments(docs):
        name = deployment["metadata"]["name"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        matching = [pdb for pdb in pdbs if pdb["spec"]["selector"]["matchLabels"] == selector]
        assert len(matching) == 1, f"expected one PDB for {name}, found {len(matching)}"
        pdb = matching[0]
        assert pdb["apiVersion"] == "policy/v1"
        # minAvailable equal to the replica floor would block every node drain.
        floor = hpa_min.get(name, deployment["spec"].get("replicas", 1))
        min_available = pdb["spec"].get("minAvailable")
        if isinstance(min_available, int):
            assert min_available < floor, f"{name}: minAvailable {min_available} >= {floor}"


def test_service_exposes_grpc_of_the_api_pods_only(docs: tuple[Manifest, ...]) -> None:
    service = named(docs, "Service", "contacts")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    ports = {port["port"]: port for port in service["spec"]["ports"]}
    assert ports[GRPC_PORT]["name"] == "grpc"
    assert ports[GRPC_PORT].get("appProtocol") == "grpc"
    assert METRICS_PORT in ports
    selector = service["spec"]["selector"]
    serve = named(docs, "Deployment", "contacts-serve")["spec"]["template"]["metadata"]
    project = named(docs, "Deployment", "contacts-project")["spec"]["template"]["metadata"]
    assert selects(selector, serve["labels"])
    assert not selects(selector, project["labels"])


def test_network_policy_admits_grpc_and_metrics(docs: tuple[Manifest, ...]) -> None:
    policies = of_kind(docs, "NetworkPolicy")
    for deployment, _, _ in deployments(docs):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert mine, f"no NetworkPolicy for {deployment['metadata']['name']}"
        allowed = {
            port["port"] for p in mine for rule in p["spec"]["ingress"] for port in rule["ports"]
        }
        assert {GRPC_PORT, METRICS_PORT} <= allowed


def test_base_sizes() -> None:
    """The numbers the overlays start from."""
    base = render(BASE)
    assert base is not None
    hpa = named(base, "HorizontalPodAutoscaler", "contacts-serve")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert named(base, "Deployment", "contacts-project")["spec"]["replicas"] == 2
    assert named(base, "PodDisruptionBudget", "contacts-serve")["spec"]["minAvailable"] == 1
    assert named(base, "PodDisruptionBudget", "contacts-project")["spec"]["maxUnavailable"] == 1


def test_overlays_change_what_they_claim() -> None:
    dev, prod, base = render(TARGETS["dev"]), render(TARGETS["prod"]), render(BASE)
    if dev is None or prod is None or base is None:
        pytest.skip("no kustomize/kubectl to render the overlays")

    def image(docs: tuple[Manifest, ...]) -> str:
        return str(containers(named(docs, "Deployment", "contacts-serve"))[0]["image"])

    assert image(dev).endswith(":dev")
    tag = image(prod).rpartition(":")[2]
    assert "@sha256:" in image(prod) or tag not in {"latest", "dev", image(prod)}
    assert named(dev, "Deployment", "contacts-project")["spec"]["replicas"] == 1
    assert named(dev, "HorizontalPodAutoscaler", "contacts-serve")["spec"]["minReplicas"] == 1

    def hpa_max(docs: tuple[Manifest, ...]) -> int:
        return int(named(docs, "HorizontalPodAutoscaler", "contacts-serve")["spec"]["maxReplicas"])

    assert hpa_max(prod) > hpa_max(base)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_is_well_formed(overlay: str) -> None:
    """Runs without kustomize too: the overlay parses and everything it names exists."""
    directory = TARGETS[overlay]
    kustomization = load_yaml(directory / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"], "an overlay must build on something"
    for entry in kustomization["resources"]:
        assert (directory / entry / "kustomization.yaml").is_file() or (
            directory / entry
        ).is_file(), f"{overlay}: missing resource {entry}"
    for patch in kustomization.get("patches", []):
        assert "path" in patch or "patch" in patch
        if "path" in patch:
            assert load_yaml(directory / patch["path"]), f"{overlay}: empty patch {patch['path']}"
    images = {image["name"]: image for image in kustomization.get("images", [])}
    assert images.get("crm-suite", {}).get("newTag") or images.get("crm-suite", {}).get("digest")


# --- docker-compose.yml ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Manifest:
    loaded = load_yaml(COMPOSE)
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_the_stack(compose: Manifest) -> None:
    services = compose["services"]
    assert {"postgres", "contacts-serve", "contacts-project"} <= set(services)
    assert any(re.search(r"eventstore|kurrent", name) for name in services)
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


@pytest.mark.parametrize("role", ["serve", "project"])
def test_compose_runs_both_roles_from_the_image(compose: Manifest, role: str) -> None:
    service = compose["services"][f"contacts-{role}"]
    assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert service["command"] == ["services.contacts", role]
    assert service["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:" in service["environment"]["DATABASE_URL"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service["read_only"] is True


def test_compose_publishes_grpc(compose: Manifest) -> None:
    ports = [str(port) for port in compose["services"]["contacts-serve"]["ports"]]
    assert any(port.split(":")[-1] == str(GRPC_PORT) for port in ports)


def test_compose_healthcheck_speaks_grpc_health(compose: Manifest) -> None:
    """Run the healthcheck's one-liner against a real grpc.health.v1 server, both states."""
    grpc = pytest.importorskip("grpc")
    health = pytest.importorskip("grpc_health.v1.health")
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")

    test = compose["services"]["contacts-serve"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], "expected a python one-liner"
    code = test[3]
    assert "$" not in code, "compose would interpolate it"

    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        env = {**os.environ, "GRPC_PORT": str(port)}
        for status, expected in (("NOT_SERVING", 1), ("SERVING", 0)):
            servicer.set("", getattr(health_pb2.HealthCheckResponse, status))
            result = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=False
            )
            assert result.returncode == expected, (status, result.stderr)
    finally:
        server.stop(None)


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    pairs = []
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages() -> list[list[tuple[str, str]]]:
    """Instructions per build stage; the last one is the image that runs."""
    split: list[list[tuple[str, str]]] = [[]]
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            split.append([])
        split[-1].append((keyword, rest))
    return split[1:]


def test_dockerfile_generates_stubs_in_a_builder_stage() -> None:
    *builders, runtime = stages()
    assert builders, "expected a multi-stage build"
    build_runs = " ".join(rest for stage in builders for kw, rest in stage if kw == "RUN")
    assert "grpc_tools.protoc" in build_runs
    assert "grpcio-tools==1.85.1" in build_runs
    assert "grpc_tools" not in " ".join(rest for kw, rest in runtime if kw == "RUN")


def test_dockerfile_never_copies_gen_from_the_context() -> None:
    for keyword, rest in dockerfile_instructions():
        if keyword not in {"COPY", "ADD"} or "--from=" in rest:
            continue
        sources = [arg for arg in shlex.split(rest) if not arg.startswith("--")][:-1]
        for source in sources:
            # "." would copy the whole context, gen/ included when .dockerignore misses it.
            assert source.strip("./").split("/")[0] not in {"gen", "", "*"}, (
                f"{keyword} {rest}: stubs must be generated, not copied"
            )


def test_dockerfile_runtime_stage() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for kw, rest in instructions if kw == "ARG" and "=" in rest)
    for keyword, rest in instructions:
        if keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], rest.split()[0])
            assert image == "python:3.11-slim-bookworm"
    runtime = stages()[-1]
    users = [rest for kw, rest in runtime if kw == "USER"]
    assert users, "the runtime stage must set USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    env = " ".join(rest for kw, rest in runtime if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    final = dict(runtime)
    assert json.loads(final["ENTRYPOINT"]) == ["python", "-m"]
    assert json.loads(final["CMD"]) == ["services.contacts", "serve"]
    assert {str(GRPC_PORT), str(METRICS_PORT)} <= set(final["EXPOSE"].split())


def test_dockerignore_keeps_the_context_clean() -> None:
    entries = {
        line.strip().strip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "gen", ".git", "node_modules", "bench/results"} <= entries
