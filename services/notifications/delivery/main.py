"""``python -m services.notifications.delivery``: the delivery workers' process (eventlet,
monkey patched by ``__main__`` before anything else is imported).

Reads the settings and the token table, starts nameko's runner with DeliveryService on the
gRPC port and the metrics endpoint, and stops on SIGTERM/SIGINT: nameko stops taking calls,
lets the running ones finish (their sends are bounded by the timeouts) and closes the SMTP pool.
"""

from __future__ import annotations

import errno
import logging
import signal
import sys

import eventlet
import eventlet.wsgi
import structlog
from nameko import config
from nameko.runners import ServiceRunner

from services.notifications.delivery import metrics
from services.notifications.delivery.service import CONFIG_KEY, DeliveryService
from services.notifications.delivery.settings import DeliverySettings
from shared.logs import configure
from shared.tokens import TokenTable, TokenTableError

log = structlog.get_logger(__name__)
MAX_CALLS = 64


class _Quiet:
    """eventlet.wsgi's access log, dropped (scrapes every few seconds)."""

    def write(self, *_: object) -> None:
        return None


def run() -> int:
    settings = DeliverySettings()
    configure(settings.log_level, settings.log_format)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # nameko logs each refused call (expected) and each worker it kills at shutdown as a warning
    # with a trace; the refusals are logged by the service itself, once, without one.
    logging.getLogger("nameko.containers").setLevel(logging.ERROR)
    try:
        tokens = TokenTable.of(settings)
    except TokenTableError as exc:
        raise SystemExit(f"the token table cannot be read: {exc}") from None
    if not len(tokens):
        raise SystemExit("CRM_TOKENS or CRM_TOKENS_FILE is required: every call is refused without")
    tls = bool(settings.grpc_tls_cert_file and settings.grpc_tls_key_file)
    chain = {"certfile": settings.grpc_tls_cert_file, "keyfile": settings.grpc_tls_key_file}
    config.setup(
        {
            "GRPC_SSL": {"cert_chain": chain} if tls else False,
            "GRPC_BIND_HOST": settings.grpc_host,
            "GRPC_BIND_PORT": settings.grpc_port,
            # Calls served at once (nameko's default is 10): a Deliver call mostly waits for
            # the green pool's sends, and the probes' health Checks must not queue behind a
            # few batches. What runs at once is bounded by DELIVERY_CONCURRENCY.
            "max_workers": MAX_CALLS,
            CONFIG_KEY: {"settings": settings, "tokens": tokens},
        }
    )
    runner = ServiceRunner()
    runner.add_service(DeliveryService)

    stopped: list[int] = []

    def stopping(signum: int) -> None:
        # Ctrl-C under `make run` brings SIGINT and then make run's SIGTERM: stop once.
        if stopped:
            log.info("delivery.already_stopping", signal=signal.Signals(signum).name)
            return
        stopped.append(signum)
        log.info("delivery.stopping", signal=signal.Signals(signum).name)
        runner.stop()

    def stop(signum: int, frame: object) -> None:
        # A signal handler runs in eventlet's hub: nothing that may wait (a lock, even the
        # log's) can run here, so everything happens in a green thread.
        eventlet.spawn_n(stopping, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.start()
    if settings.metrics_port:  # after the gRPC port listens: /healthz answering means serving
        sock = eventlet.listen((settings.metrics_host, settings.metrics_port))
        eventlet.spawn_n(eventlet.wsgi.server, sock, metrics.app, log=_Quiet(), log_output=False)
    log.info(
        "delivery.started",
        grpc=f"{settings.grpc_host}:{settings.grpc_port}",
        tls=tls,
        metrics=settings.metrics_port,
        smtp=f"{settings.smtp_host}:{settings.smtp_port}",
        concurrency=settings.delivery_concurrency,
    )
    waiting = eventlet.spawn(runner.wait)
    while True:
        try:
            waiting.wait()
        except OSError as exc:  # the signal interrupted the hub's wait
            if exc.errno == errno.EINTR:
                continue
            raise
        break
    log.info("delivery.stopped")
    return 0
