"""python -m bench.serve_without_tokens SERVICE serve: the service's role exactly as
``python -m services.SERVICE serve`` runs it, but every call is admitted as a ``service`` caller
without reading its metadata: no token parsed, hashed or looked up, no role checked. The
baseline of grpc_register_contact_auth_cost (bench/auth_cost.py). Bench only: nothing in the
suite starts it, and no setting turns access control off."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from services.registry import SERVICES
from shared import runtime
from shared.grpckit import server
from shared.grpckit.auth import SERVICE, AccessControl, Caller, Rule, admitted


class Unchecked(AccessControl):
    """Admits every call, as the servicers need a caller (the events record its name)."""

    def admit(
        self, metadata: Mapping[str, str], rule: Rule | None, service: str, method: str
    ) -> Caller:
        return admitted(Caller("bench-unchecked", SERVICE, f"{service}/{method}", ""))


if __name__ == "__main__":
    spec = {s.name: s for s in SERVICES}[sys.argv[1]]
    server.AccessControl = Unchecked  # type: ignore[misc]  # what GrpcServer builds
    runtime.main(sys.argv[1:], spec)
