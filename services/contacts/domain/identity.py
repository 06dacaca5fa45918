"""Normalising identities: lower-cased, validated email; phone in E.164; trimmed external id."""

from __future__ import annotations

import hashlib

import phonenumbers
from email_validator import EmailNotValidError, validate_email

KINDS = ("email", "phone", "external_id")
MAX_EXTERNAL_ID = 255


class BadIdentity(ValueError):
    pass


def normalise_email(raw: str) -> str:
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise BadIdentity(str(exc)) from None
    return result.normalized.lower()


def normalise_phone(raw: str) -> str:
    try:
        number = phonenumbers.parse(raw.strip(), None)
    except phonenumbers.NumberParseException:
        raise BadIdentity("not a phone number in international format (+<country code>…)") from None
    if not phonenumbers.is_valid_number(number):
        raise BadIdentity("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_external_id(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > MAX_EXTERNAL_ID or not value.isprintable():
        raise BadIdentity(f"must be 1..{MAX_EXTERNAL_ID} printable characters")
    return value


NORMALISERS = {
    "email": normalise_email,
    "phone": normalise_phone,
    "external_id": normalise_external_id,
}


def identity_stream(kind: str, value: str) -> str:
    """The stream that guards one identity. Hashed: no personal data in stream names."""
    digest = hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()
    return f"contactidentity-{digest}"
