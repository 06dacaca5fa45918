"""The gRPC surface of the workers without grpcio: nameko-grpc's service description built from
the generated ``*_pb2`` descriptors, and refusals as a google.rpc.Status with one ErrorInfo.

nameko-grpc is handed a "stub" class and reads from it, by the convention of generated code,
the methods' paths and kinds (it instantiates the stub on a mock channel) and, from the module
named like the stub's without ``_grpc``, the service descriptor and message classes. The
generated ``*_pb2_grpc.py`` modules import grpc, whose C core must not run inside an eventlet
process; ``stub_of`` builds the same class from the descriptor alone. (nameko-grpc itself
imports ``grpc.StatusCode``, an enum: grpc's C core is loaded with it but never started, no
channel and no server of grpcio exist in this process.)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "notifications.crm"
MAX_TEXT = 256


def stub_of(module: ModuleType, service: str) -> type:
    """``<Service>Stub`` for nameko-grpc, as ``<module>_grpc`` would define it."""
    desc = module.DESCRIPTOR.services_by_name[service]

    def init(self: Any, channel: Any) -> None:
        for method in desc.methods:
            kind = (
                ("stream" if method.client_streaming else "unary")
                + "_"
                + ("stream" if method.server_streaming else "unary")
            )
            setattr(self, method.name, getattr(channel, kind)(f"/{desc.full_name}/{method.name}"))

    # nameko-grpc finds the descriptors in the module named like this one without "_grpc".
    return type(f"{service}Stub", (), {"__init__": init, "__module__": f"{module.__name__}_grpc"})


def status(code: int, reason: str, message: str, **metadata: str) -> status_pb2.Status:
    """A google.rpc.Status with one ErrorInfo in the notifications domain."""
    info = error_details_pb2.ErrorInfo(
        reason=reason,
        domain=DOMAIN,
        metadata={k: v[:MAX_TEXT] for k, v in metadata.items()},
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=code, message=message[:512], details=[detail])


UNAUTHENTICATED = code_pb2.UNAUTHENTICATED
PERMISSION_DENIED = code_pb2.PERMISSION_DENIED
INVALID_ARGUMENT = code_pb2.INVALID_ARGUMENT
INTERNAL = code_pb2.INTERNAL
UNAVAILABLE = code_pb2.UNAVAILABLE
NOT_FOUND = code_pb2.NOT_FOUND
