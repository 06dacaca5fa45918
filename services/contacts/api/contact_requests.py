"""ContactsService requests -> domain inputs: profiles, import rows, identities to look up, and
the page tokens of ListContactEvents."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from crm.contacts.v1 import contacts_pb2 as pb
from services.contacts.api.common import DOMAIN
from services.contacts.domain.contact import ProfileInput
from services.contacts.domain.identity import NORMALISERS, BadIdentity
from shared.domain import paging
from shared.grpckit import calls
from shared.grpckit import errors as ge

_IMPORTABLE = (
    "email",
    "phone",
    "external_id",
    "first_name",
    "last_name",
    "tags",
    "locale",
    "time_zone",
)


def profile_in(m: Any) -> ProfileInput:
    """The profile fields of a Contact, ImportRow or the like."""
    return ProfileInput(
        email=m.email,
        phone=m.phone,
        external_id=m.external_id,
        first_name=m.first_name,
        last_name=m.last_name,
        tags=tuple(m.tags),
        locale=m.locale,
        time_zone=m.time_zone,
        attributes={
            k: json_format.MessageToDict(v, preserving_proto_field_name=True)
            for k, v in m.attributes.items()
        },
    )


def import_fields(r: pb.ImportRow) -> tuple[str, ...]:
    """The fields an import row sets: the non-empty ones (attributes one by one, merged)."""
    plain = [f for f in _IMPORTABLE if getattr(r, f)]
    return (*plain, *(f"attributes.{k}" for k in r.attributes))


def normalised(kind: str, value: str) -> str:
    """An identity to look up, normalised as stored ("" when not given)."""
    if not value:
        return ""
    try:
        return NORMALISERS[kind](value)
    except BadIdentity as exc:
        raise ge.InvalidArgument(
            f"INVALID_{kind.upper()}",
            f"{kind}: {exc}",
            domain=DOMAIN,
            violations=[(kind, str(exc))],
        ) from None


def encode_version_token(version: int, contact_id: str) -> str:
    return paging.encode_token(version, f"events|{contact_id}")


def version_token(token: str, contact_id: str) -> int:
    version = paging.decode_token(token, f"events|{contact_id}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise calls.invalid(DOMAIN, "page_token", "INVALID_PAGE_TOKEN", "not a page token")
    return version
