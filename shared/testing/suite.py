"""Everything a fresh database needs for the given services (tests, benchmarks): the event
store, the projection bookkeeping, and each service's migrations and read-model schemas."""

from __future__ import annotations

from collections.abc import Sequence

from shared.migrations import migrate_services
from shared.service import ServiceSpec


async def migrate_everything(dsn: str, services: Sequence[ServiceSpec]) -> None:
    await migrate_services(dsn, services)
