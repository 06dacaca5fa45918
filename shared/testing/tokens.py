"""The test suite's bearer tokens: one per role, fixed and public (tests only). Every server a
test starts gets their table (``SETTINGS``), so the whole suite runs with access control on."""

from __future__ import annotations

from typing import Any

from shared.grpckit.auth import table_line

TOKENS = {
    "service": "test-service-token",
    "operator": "test-operator-token",
    "auditor": "test-auditor-token",
}
NAMES = {role: f"test-{role}" for role in TOKENS}  # the token names, as audit events show them
TABLE = "\n".join(table_line(NAMES[role], role, token) for role, token in TOKENS.items())
SERVICE_TOKEN = TOKENS["service"]
# A service's settings under test: the table, and the token it presents to other services.
SETTINGS: dict[str, Any] = {"crm_tokens": TABLE, "crm_service_token": SERVICE_TOKEN}
# The same as environment variables, for services started as processes.
ENV = {"CRM_TOKENS": TABLE, "CRM_SERVICE_TOKEN": SERVICE_TOKEN}
