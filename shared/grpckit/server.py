"""grpc.aio server bootstrap: health (NOT_SERVING until ready), reflection, interceptor (with
access control: auth.py), optional TLS or mutual TLS, graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared.grpckit.auth import AccessControl, TokenTable
from shared.grpckit.interceptor import ServerInterceptor
from shared.settings import Settings

T = TypeVar("T")

log = structlog.get_logger(__name__)

# A health name that reports SERVING for as long as the process runs: liveness probes use it,
# so a database outage makes pods unready (no traffic) without restarting them.
LIVENESS = "liveness"

Register = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True)
class Limits:
    """What one server process accepts. Messages: 4 MiB each way (gRPC's own default, chosen
    on purpose: the largest request, an ImportContacts message of 1,000 rows, is far below it).
    Metadata: 16 KiB. In flight: per method (see interceptor.Admission)."""

    max_message_bytes: int = 4 * 1024 * 1024
    max_metadata_bytes: int = 16 * 1024
    max_in_flight_per_method: int = 10
    queue_seconds: float = 1.0

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_message_bytes=settings.grpc_max_message_bytes,
            max_in_flight_per_method=settings.grpc_max_in_flight_per_method
            or max(1, settings.db_pool_size // 2),
            queue_seconds=settings.grpc_queue_seconds,
        )


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate chain and key (PEM); with ``client_ca``, clients must present
    a certificate it signed (mutual TLS)."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @classmethod
    def of(cls, settings: Any) -> ServerTls | None:
        """From GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE and GRPC_TLS_CA_FILE; None: plaintext."""
        if not (settings.grpc_tls_cert_file or settings.grpc_tls_key_file):
            return None
        if not (settings.grpc_tls_cert_file and settings.grpc_tls_key_file):
            raise SystemExit("GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE go together")
        ca = settings.grpc_tls_ca_file
        return cls(
            Path(settings.grpc_tls_cert_file).read_bytes(),
            Path(settings.grpc_tls_key_file).read_bytes(),
            Path(ca).read_bytes() if ca else None,
        )

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


class GrpcServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        services: Iterable[tuple[str, Register]] = (),
        grace: float = 20.0,
        limits: Limits | None = None,
        tokens: TokenTable | None = None,
        access: AccessControl | None = None,
        tls: ServerTls | None = None,
        ungated: Iterable[str] = (),
    ) -> None:
        """``tokens``: who may call (none: nobody but health checks and reflection);
        ``access`` overrides the access control altogether (tests of the kit); ``ungated``:
        services whose calls are served while the server is not ready (they check their own
        state; access control still applies); their health names follow readiness like the
        others'."""
        limits = limits or Limits()
        self.interceptor = ServerInterceptor(
            max_in_flight_per_method=limits.max_in_flight_per_method,
            queue_seconds=limits.queue_seconds,
            access=access or AccessControl(tokens or TokenTable()),
        )
        self.interceptor.ungated = frozenset(ungated)
        self.server = grpc.aio.server(
            interceptors=[self.interceptor],
            options=[
                ("grpc.max_receive_message_length", limits.max_message_bytes),
                ("grpc.max_send_message_length", limits.max_message_bytes),
                ("grpc.max_metadata_size", limits.max_metadata_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.grace = grace
        self._ready = False
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.names = [name for name, _ in services]
        for _, register in services:
            register(self.server)
        reflection.enable_server_reflection(
            [*self.names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        address = f"{host}:{port}"
        if tls is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, tls.credentials())

    async def start(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._ready = False
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await self.server.start()

    async def ready(self) -> None:
        await self.set_ready(True)

    async def set_ready(self, ready: bool, *, why: str = "") -> None:
        """Readiness (the overall and per-service health names); ``liveness`` stays SERVING.
        Transitions are logged, with ``why`` when becoming NOT_SERVING."""
        if ready == self._ready:
            return
        self._ready = self.interceptor.ready = ready
        if ready:
            log.info("health.serving")
        else:
            log.warning("health.not_serving", why=why)
        await self._set_all(
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )

    async def _set_all(self, status: int) -> None:
        for name in ["", *self.names]:
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Drain: report NOT_SERVING (load balancers stop sending), let in-flight calls finish;
        calls that still arrive get UNAVAILABLE (NOT_READY) and retry elsewhere."""
        self._ready = self.interceptor.ready = False
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(self.grace)


async def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[None]],
) -> None:
    """Run ``main(stop)``; SIGTERM or SIGINT sets ``stop``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or None if ``stop`` is set first (e.g. SIGTERM while the database is
    still away at start-up): a pod must be able to stop before it ever connected."""
    doing = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([doing, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if doing.done():
        return doing.result()
    doing.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await doing
    return None
