"""Access control in every way the suite is run: every role of every Deployment mounts the token
table (the crm-api-tokens Secret) and reads it, the roles that call the contacts API present
their own service token (crm-service-tokens) and no other role gets one; compose does the same
with its public development table, published on loopback only; `make run` makes fresh tokens,
one service token per service, and hands the roles hashes only."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.registry import SERVICES
from shared.devrun import DevTokens
from shared.grpckit.auth import OPERATOR, SERVICE, TokenTable, parse_tokens
from shared.settings import Settings
from tests.deploy.test_manifests import (
    COMPOSE,
    ROOT,
    TARGETS,
    Manifest,
    containers,
    deployments,
    load_yaml,
    render,
)

# The roles that call another service's API (the NetworkPolicy tests admit the same ones): the
# contacts API, and the notifications delivery workers.
CALLERS = {
    "orders-serve",
    "segmentation-serve",
    "segmentation-project",
    "notifications-serve",
    "notifications-project",
}
TOKENS_SECRET, SERVICE_TOKENS_SECRET = "crm-api-tokens", "crm-service-tokens"


@pytest.fixture(params=sorted(TARGETS), scope="module")
def rendered(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    docs = render(TARGETS[request.param])
    if docs is None:
        pytest.skip(f"overlay {request.param}: no kustomize/kubectl to render it")
    return docs


def test_every_role_reads_the_token_table_from_the_secret(rendered: tuple[Manifest, ...]) -> None:
    seen = set()
    for deployment, service, role in deployments(rendered):
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        secret_volumes = [
            name
            for name, v in volumes.items()
            if v.get("secret", {}).get("secretName") == TOKENS_SECRET
        ]
        assert len(secret_volumes) == 1, f"{service}-{role} does not mount {TOKENS_SECRET}"
        for container in containers(deployment):
            env = {e["name"]: e for e in container.get("env", [])}
            path = Path(env["CRM_TOKENS_FILE"]["value"])
            mounts = [
                m for m in container.get("volumeMounts", []) if m["name"] == secret_volumes[0]
            ]
            assert len(mounts) == 1 and mounts[0].get("readOnly") is True
            # the file the setting names is the Secret's `tokens` key in that mount
            assert path == Path(mounts[0]["mountPath"]) / "tokens", (service, role, path)
            assert "CRM_TOKENS" not in env, "the table comes from the Secret, not a literal"
        seen.add(service)
    assert seen == {spec.name for spec in SERVICES}


def test_only_the_callers_present_their_own_service_token(rendered: tuple[Manifest, ...]) -> None:
    for deployment, service, role in deployments(rendered):
        name = f"{service}-{role}"
        for container in containers(deployment):
            env = {e["name"]: e for e in container.get("env", [])}
            if name in CALLERS:
                assert env["CRM_SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
                    "name": SERVICE_TOKENS_SECRET,
                    "key": service,  # each service its own: the audit names it
                }
            else:
                assert "CRM_SERVICE_TOKEN" not in env, f"{name} calls no other service"


def test_callers_know_where_they_call() -> None:
    # CALLERS above must stay the roles whose settings name another API (contacts, delivery).
    for spec in SERVICES:
        fields = spec.settings.model_fields
        names = "contacts_target" in fields or "delivery_url" in fields
        assert names == any(c.startswith(spec.name) for c in CALLERS)


# --- docker compose ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Manifest:
    loaded = load_yaml(COMPOSE)
    assert isinstance(loaded, dict)
    return loaded


ROLES = [f"{spec.name}-{role}" for spec in SERVICES for role in spec.roles]


@pytest.mark.parametrize("name", ROLES)
def test_compose_roles_read_the_development_table(compose: Manifest, name: str) -> None:
    service = compose["services"][name]
    path = service["environment"]["CRM_TOKENS_FILE"]
    mounts = dict(reversed(v.rsplit(":", 2)[:2]) for v in service["volumes"])
    table = TokenTable.of(Settings(crm_tokens_file=str(ROOT / mounts[path])))
    assert {t.name for t in table.tokens if t.role == OPERATOR} == {"dev-operator"}
    token = service["environment"].get("CRM_SERVICE_TOKEN")
    if name in CALLERS:
        default = token.removeprefix("${").removesuffix("}").split(":-", 1)[1]
        entry = table.authenticate(default)
        assert entry is not None and (entry.name, entry.role) == (name.split("-")[0], SERVICE)
    else:
        assert token is None
    for port in service.get("ports", []):  # the development tokens are public
        if str(port).endswith(":50051"):
            assert str(port).startswith("127.0.0.1:"), port


# --- make run ---------------------------------------------------------------------------------


def test_make_run_hands_out_fresh_tokens_and_hashes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_TOKENS", raising=False)
    one, other = DevTokens.make(SERVICES), DevTokens.make(SERVICES)
    assert set(one.tokens.values()).isdisjoint(other.tokens.values()), "fresh at each start"
    table = TokenTable(parse_tokens(one.table, "make run"))
    for name, token in one.tokens.items():
        assert token not in one.table
        entry = table.authenticate(token)
        assert entry is not None and entry.name == name
    for spec in SERVICES:
        env = one.env(spec.name)
        entry = table.authenticate(env["CRM_SERVICE_TOKEN"])
        assert entry is not None and (entry.name, entry.role) == (spec.name, SERVICE)
    roles = {table.authenticate(one.tokens[n]).role_name for n in ("dev-operator", "dev-auditor")}  # type: ignore[union-attr]
    assert roles == {"operator", "auditor"}
    # a developer's own tokens (CRM_TOKENS) keep working across restarts
    monkeypatch.setenv("CRM_TOKENS", "mine operator " + "a" * 64)
    assert "mine operator" in DevTokens.make(SERVICES).table
