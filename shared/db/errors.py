"""What a database error means for the caller: the database is away (a restart, a failover, a
full connection table: try again), a statement ran out of time, or a transaction lost a race.
Anything else is a bug or bad data, and is not retried blindly."""

from __future__ import annotations

import enum

import asyncpg


class DbFault(enum.Enum):
    UNAVAILABLE = "unavailable"  # retry later: nothing was committed
    TIMEOUT = "timeout"  # statement_timeout / lock_timeout fired
    CONFLICT = "conflict"  # serialization failure or deadlock: retry the transaction


_UNAVAILABLE_STATES = ("08", "53", "57P", "25006")  # connection, resources, shutdown, read-only
_TIMEOUT_STATES = ("57014", "55P03")  # query cancelled (statement_timeout), lock not available
_CONFLICT_STATES = ("40001", "40P01")


def classify(exc: BaseException) -> DbFault | None:
    """The fault ``exc`` stands for, or None when it is not a database availability problem."""
    if isinstance(exc, asyncpg.exceptions.DataError):  # bad query arguments: our bug
        return None
    state = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and state:
        if state.startswith(_TIMEOUT_STATES):
            return DbFault.TIMEOUT
        if state.startswith(_CONFLICT_STATES):
            return DbFault.CONFLICT
        if state.startswith(_UNAVAILABLE_STATES):
            return DbFault.UNAVAILABLE
        return None
    if isinstance(
        exc,
        asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError | OSError | ConnectionError,
    ):
        return DbFault.UNAVAILABLE
    return None


def transient(exc: BaseException) -> bool:
    """True when retrying the same work later can succeed without anyone changing anything."""
    return classify(exc) is not None
