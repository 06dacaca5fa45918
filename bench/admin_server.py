"""A project role that runs nothing but the Admin API (no projections, no workers), so the
export benchmark measures the export and not a read model catching up with the log.

python -m bench.admin_server (settings from the environment: DATABASE_URL, GRPC_PORT, …)
"""

from __future__ import annotations

import asyncio

import uvloop

from shared import runtime
from shared.grpckit.server import run_until_signalled
from shared.logs import configure
from shared.settings import Settings


def _nothing(rt: runtime.Runtime, settings: Settings, stop: asyncio.Event) -> runtime.Work:
    return runtime.Work([])


async def _role(settings: Settings, stop: asyncio.Event) -> None:
    await runtime.project(settings, stop, runtime.connect, _nothing, service="bench")


def main() -> None:
    settings = Settings().model_copy(update={"db_statement_timeout_seconds": 0.0})
    configure(settings.log_level, settings.log_format)
    uvloop.install()
    asyncio.run(run_until_signalled(lambda stop: _role(settings, stop)))


if __name__ == "__main__":
    main()
