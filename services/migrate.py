"""`python -m services.migrate [--check]`: bring the database to what every registered service
needs (the event store, the projection bookkeeping, each service's SQL migrations and read-model
schemas), once, before the roles start. The Kubernetes manifests run it as the crm-migrate Job
and start the roles with MIGRATE_ON_START=false, so they wait NOT_SERVING until it is done
(docs/architecture.md §8). ``--check`` changes nothing and exits 1 while anything is missing.

The database is DATABASE_URL, as for the roles (unset: the embedded server); it is waited for up
to two minutes. Safe to run again and beside other migrators: each file is applied once, under an
advisory lock.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import structlog

from services.registry import SERVICES
from shared.db import connect_pool, embedded
from shared.logs import configure
from shared.migrations import migrate_database, of_services, unmigrated
from shared.settings import Settings

USAGE = "usage: python -m services.migrate [--check]"
log = structlog.get_logger("services.migrate")


async def run(settings: Settings, *, check: bool) -> int:
    """Migrate (or only check); 0 when the database has everything, 1 when it does not."""
    dsn = settings.database_url
    if not dsn:
        dsn, _ = embedded.start(embedded.default_data_dir())
    migrations, projections = of_services(SERVICES)
    store = settings.eventstore_backend == "postgres"  # else the store is not in this database
    pool = await connect_pool(dsn, max_size=1, wait_seconds=120)
    try:
        async with pool.acquire() as conn:
            missing = await unmigrated(conn, migrations, projections, store=store)
            if check:
                log.info("migrations.checked", missing=missing, count=len(missing))
                return 1 if missing else 0
            await migrate_database(conn, migrations, projections, store=store)
            left = await unmigrated(conn, migrations, projections, store=store)
    finally:
        await pool.close()
    log.info("migrations.applied", applied=missing, count=len(missing))
    if left:  # a migration that does not record itself, or a schema it failed to create
        log.error("migrations.incomplete", missing=left)
    return 1 if left else 0


def main(argv: Sequence[str]) -> int:
    args = list(argv[1:])
    if args not in ([], ["--check"]):
        raise SystemExit(USAGE)
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    return asyncio.run(run(settings, check=bool(args)))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
