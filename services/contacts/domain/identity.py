"""Normalising identities: lower-cased, validated email; phone in E.164; trimmed external id."""

from __future__ import annotations

import hashlib
import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

KINDS = ("email", "phone", "external_id")
MAX_EXTERNAL_ID = 255


class BadIdentity(ValueError):
    pass


# A strict ASCII subset of what email_validator accepts, checked in microseconds: dot-atom local
# part, LDH labels, alphabetic TLD, no special-use domain. Anything else (IDN, quoted local parts,
# odd punctuation) goes to email_validator, which takes ~100x longer. A property test keeps the
# two in agreement.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST_EMAIL = re.compile(rf"^(?P<local>{_LOCAL})@(?P<domain>(?:{_LABEL}\.)+[A-Za-z]{{2,63}})$")
_SPECIAL_USE = {"arpa", "invalid", "local", "localhost", "onion", "test"}


def _fast_email(value: str) -> str | None:
    m = _FAST_EMAIL.match(value)
    if m is None or len(value) > 254 or len(m["local"]) > 64:
        return None
    domain = m["domain"].lower()
    if domain.rsplit(".", 1)[-1] in _SPECIAL_USE or "xn--" in domain:
        return None
    return value.lower()


def normalise_email(raw: str) -> str:
    value = raw.strip()
    if (fast := _fast_email(value)) is not None:
        return fast
    try:
        result = validate_email(value, check_deliverability=False)
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
