"""The port to the contacts service: who a customer is, by contact id or by identity."""

from __future__ import annotations

from typing import Protocol


class ContactDirectory(Protocol):
    async def resolve(self, kind: str, value: str, *, request_id: str = "") -> str:
        """The contact id holding identity ``kind`` (email, phone, external_id) = ``value``;
        a guest contact is registered when none holds it. Raises Invalid for a malformed
        identity, Unavailable-style errors when the contacts service cannot be reached."""
        ...
