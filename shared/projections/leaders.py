"""Who holds a projection's locks. A runner leads a projection through a session advisory lock
(runner.py) and a rebuild holds another for as long as it runs (rebuild.py); PostgreSQL's
pg_locks is the truth about both, whatever a table or a process believes. The leader also
records its host and pid (projections.leaders) so that an operator sees which replica leads;
that row is only believed while its session still holds the lock."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

# The key of a session lock taken with pg_try_advisory_lock(hashtext(<prefix> || name)), as
# pg_locks shows it: one bigint split into classid (high half) and objid (low half), objsubid 1.
_KEY = "((l.classid::bigint << 32) | l.objid::bigint)"
LEAD, REBUILD = "projection:", "rebuild:"


def here() -> tuple[str, int]:
    """This process: host name and pid."""
    return socket.gethostname(), os.getpid()


async def record_leader(lock_conn: asyncpg.Connection, name: str) -> None:
    """This process leads ``name`` from now on, through the session of ``lock_conn``."""
    host, pid = here()
    await lock_conn.execute(
        """INSERT INTO projections.leaders (name, host, pid, backend_pid)
           VALUES ($1, $2, $3, pg_backend_pid())
           ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,
               backend_pid = excluded.backend_pid, since = now()""",
        name,
        host,
        pid,
    )


@dataclass(frozen=True)
class Holder:
    """A session holding a projection's lock: its backend pid, and the host and pid of the
    process that recorded itself as leader through it ("" and 0 when none did)."""

    backend_pid: int
    host: str = ""
    pid: int = 0
    since: datetime | None = None


async def holders(
    conn: asyncpg.Connection | asyncpg.Pool, prefix: str, names: Sequence[str]
) -> dict[str, Holder]:
    """The session holding the ``prefix`` lock (LEAD or REBUILD) of each of ``names`` that is
    held at all."""
    rows = await conn.fetch(
        f"""SELECT n.name, l.pid AS backend_pid, r.host, r.pid, r.since
            FROM unnest($1::text[]) AS n (name)
            JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND {_KEY} = hashtext($2 || n.name)::bigint
            LEFT JOIN projections.leaders r ON r.name = n.name AND r.backend_pid = l.pid
                 AND $2 = '{LEAD}'""",
        list(names),
        prefix,
    )
    return {
        r["name"]: Holder(int(r["backend_pid"]), r["host"] or "", int(r["pid"] or 0), r["since"])
        for r in rows
    }
