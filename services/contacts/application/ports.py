"""What the contacts application needs from outside, as protocols: the PostgreSQL adapters
implement them (adapters/keys.py), and the application tests use in-memory fakes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class KeyStore(Protocol):
    """Per-contact data keys, kept outside the log: destroying one is the erasure."""

    async def ensure(self, contact_ids: Iterable[str], conn: Any = None) -> dict[str, bytes | None]:
        """Create keys for new contacts; each contact's key (None if destroyed)."""
        ...

    async def get_many(
        self, contact_ids: Iterable[str], conn: Any = None
    ) -> dict[str, bytes | None]:
        """Live keys by contact id; None for a destroyed key; absent when never created."""
        ...

    async def get(self, contact_id: str) -> bytes | None: ...

    async def destroy(self, contact_id: str, conn: Any = None) -> None: ...
