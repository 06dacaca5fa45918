"""A service declares itself once, in ``services/<name>/spec.py``: its name, settings, roles,
what it migrates, its read models, how `make run` starts it and its `crm` sub-commands.
``services/registry.py`` lists the services; `make run`, the test database template, the `crm`
CLI, the benchmarks and the deploy tests follow that list, so adding a service is its folder,
its deploy files and one registry line (README: "Adding a service")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.grpckit.server import Register
from shared.projections.model import Projection
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.runtime import Runtime

# A role's entry point: run until ``stop`` is set (SIGTERM/SIGINT), with the role's settings.
Role = Callable[[Any, asyncio.Event], Awaitable[None]]


@dataclass(frozen=True)
class ProcessRole:
    """A role that is a program of its own: ``python -m services.<name> <role>`` becomes
    ``python -m <module>`` (shared/runtime.py ``main`` execs it), which reads its own settings
    and handles SIGTERM itself. For workers that cannot share the asyncio runtime (the
    notifications delivery workers run nameko on eventlet). It owns no database: the deploy
    files give it none, and the migrations do not wait for it."""

    module: str  # e.g. "services.notifications.delivery"


class Api(Protocol):
    """A serve role's gRPC services: registered when the server starts (health says
    NOT_SERVING), bound to the runtime once the database is there, closed at shutdown. The same
    object serves in production (``serve``) and in tests (shared/testing/service_env.py)."""

    @property
    def services(self) -> Sequence[tuple[str, Register]]: ...

    async def bind(self, rt: Runtime, settings: Any) -> None:
        """Build the application on ``rt`` and hand it to the servicers; start any other
        endpoint of the role (webhooks)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class DevRole:
    """How `make run` starts one role on a developer's machine."""

    grpc_port: int
    metrics_port: int
    env: Mapping[str, str] = field(default_factory=dict)  # role-specific settings
    http: str = ""  # other endpoints, printed in the table


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # the package under services/, the ErrorInfo domain "<name>.crm"
    settings: type[Settings]
    # "serve", "project", and any other (e.g. the notifications delivery workers: a ProcessRole)
    roles: Mapping[str, Role | ProcessRole]
    # (component, directory) of SQL migrations the service owns, besides its read models
    migrations: Sequence[tuple[str, Path]] = ()
    # the read models (and reactors) whose schemas a fresh database gets
    projections: Callable[[], Sequence[Projection]] = tuple
    dev: Mapping[str, DevRole] = field(default_factory=dict)  # role -> make run
    cli: Any = None  # a typer.Typer mounted as `crm <cli_name or name> …`, or None
    cli_name: str = ""  # the `crm` sub-command, when not the service's name (`crm segments`)
    # more typer.Typer apps of the service, mounted as `crm <name> …` (`crm reports`)
    more_cli: Mapping[str, Any] = field(default_factory=dict)
    # The serve role's APIs, unbound (the test environment serves them: shared/testing)
    api: Callable[[], Api] | None = None

    def process_roles(self) -> dict[str, ProcessRole]:
        """The roles that are programs of their own (no asyncio runtime, no database)."""
        return {n: r for n, r in self.roles.items() if isinstance(r, ProcessRole)}
