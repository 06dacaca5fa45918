"""The contacts servicers' request helpers: shared/grpckit/calls.py bound to this domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import grpc

from services.contacts.domain import consent, contact
from services.contacts.domain.identity import MAX_EXTERNAL_ID
from shared.grpckit import calls
from shared.grpckit import errors as ge
from shared.grpckit.limits import Limits

DOMAIN = "contacts.crm"
MAX_IMPORT_BATCH = 1000  # rows per ImportContacts message
# Checked before anything else in every RPC of both services (see the canvas's Limits section).
# Other strings: identifiers (*_id) 128, etag 32, page_token 1024, anything else 4096 (the
# profile's own rules, e.g. names <= 200, are checked after, per row in imports); lists and maps
# 1000 items; attribute names 128.
MAX_VERSION_REFS = 500  # BatchGetContactVersions
MAX_BATCH_IDS = 500  # BatchGetContacts, BatchGetConsents

LIMITS = Limits(
    fields={
        "email": 320,
        "phone": 64,
        "external_id": MAX_EXTERNAL_ID,
        "tags": 256,
        "tag": 256,
        "locale": 64,
        "time_zone": 64,
        "token": 512,
        "reason": contact.MAX_REASON,
        "note": consent.MAX_NOTE,
        "source": consent.MAX_SOURCE,
        "policy_version": consent.MAX_POLICY_VERSION,
        "user_agent": consent.MAX_USER_AGENT,
        "ip": 64,
        "rows[]": MAX_IMPORT_BATCH,
        "refs[]": MAX_VERSION_REFS,
        "contact_ids": 128,  # each one a contact id
        "contact_ids[]": MAX_BATCH_IDS,
    },
    reasons={"rows[]": "TOO_MANY_ROWS", "timestamp_value": "INVALID_ATTRIBUTE"},
)


def invalid(field: str, reason: str, message: str) -> ge.InvalidArgument:
    return calls.invalid(DOMAIN, field, reason, message)


def contact_id(value: str, field: str = "contact_id") -> str:
    return calls.uuid_arg(DOMAIN, value, field, "INVALID_CONTACT_ID")


def batch_ids(values: Sequence[str], field: str = "contact_ids") -> list[str]:
    """1..MAX_BATCH_IDS contact ids, normalised, each once in first-occurrence order. Every
    malformed one is named (``contact_ids[3]``) in the one error."""
    if not values or len(values) > MAX_BATCH_IDS:
        raise ge.InvalidArgument(
            "TOO_MANY_ITEMS" if values else "CONTACT_IDS_REQUIRED",
            f"{field}: 1 to {MAX_BATCH_IDS} contact ids",
            domain=DOMAIN,
            violations=[(field, f"1 to {MAX_BATCH_IDS} ids")],
        )
    ids: dict[str, None] = {}
    bad: list[tuple[str, str]] = []
    for i, value in enumerate(values):
        try:
            ids[str(uuid.UUID(value))] = None
        except ValueError:
            bad.append((f"{field}[{i}]", "must be a UUID"))
    if bad:
        raise ge.InvalidArgument(
            "INVALID_CONTACT_ID", "every contact id must be a UUID", domain=DOMAIN, violations=bad
        )
    return list(ids)


def page_size(value: int, most: int = calls.MAX_PAGE) -> int:
    return calls.page_size(DOMAIN, value, most)


def meta(request_id: str, context: grpc.aio.ServicerContext) -> dict[str, Any]:
    return calls.event_meta(request_id, context)
