"""What nameko-grpc takes from grpcio, without grpcio: the ``StatusCode`` enum.

nameko-grpc speaks HTTP/2 itself (h2 over eventlet sockets) and uses grpcio only for
``from grpc import StatusCode``. Importing the real ``grpc`` loads its C core (and grpc.aio)
into the eventlet process, where that core does not work. ``install()`` puts a module named
``grpc`` holding only this enum (the same names and values as grpcio's) in ``sys.modules``
before nameko-grpc is imported: the C core is then never loaded, and any other use of grpc in
this process fails at once (AttributeError) instead of hanging later.
"""

from __future__ import annotations

import enum
import sys
import types


class StatusCode(enum.Enum):
    OK = (0, "ok")
    CANCELLED = (1, "cancelled")
    UNKNOWN = (2, "unknown")
    INVALID_ARGUMENT = (3, "invalid argument")
    DEADLINE_EXCEEDED = (4, "deadline exceeded")
    NOT_FOUND = (5, "not found")
    ALREADY_EXISTS = (6, "already exists")
    PERMISSION_DENIED = (7, "permission denied")
    RESOURCE_EXHAUSTED = (8, "resource exhausted")
    FAILED_PRECONDITION = (9, "failed precondition")
    ABORTED = (10, "aborted")
    OUT_OF_RANGE = (11, "out of range")
    UNIMPLEMENTED = (12, "unimplemented")
    INTERNAL = (13, "internal")
    UNAVAILABLE = (14, "unavailable")
    DATA_LOSS = (15, "data loss")
    UNAUTHENTICATED = (16, "unauthenticated")


def install() -> None:
    """Before nameko-grpc is imported; refuses when the real grpc is already loaded."""
    present = sys.modules.get("grpc")
    if present is not None and getattr(present, "StatusCode", None) is not StatusCode:
        raise RuntimeError("grpcio is already loaded in the delivery worker's process")
    module = types.ModuleType("grpc", __doc__)
    module.StatusCode = StatusCode  # type: ignore[attr-defined]
    sys.modules["grpc"] = module
