"""Per-contact data keys in PostgreSQL (schema contacts_keys), and sealing of personal fields.

Events carry personal fields only inside one sealed blob per event (AES-256-GCM with the
contact's key, the contact id as associated data). Destroying the key is the erasure: the
events stay, byte for byte, but their personal fields can no longer be read.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MIGRATIONS = Path(__file__).parent / "migrations"
SEALED = "personal"  # the event data key holding the sealed blob
ERASED = "[erased]"  # what an auditor sees in place of a shredded field
# Fields that never appear in clear in an event.
PERSONAL = frozenset(
    {"email", "phone", "external_id", "first_name", "last_name", "attributes", "evidence"}
)


def seal(key: bytes, contact_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The event data with its personal fields moved into one sealed blob."""
    personal = {k: v for k, v in data.items() if k in PERSONAL}
    out = {k: v for k, v in data.items() if k not in PERSONAL}
    if personal:
        nonce = os.urandom(12)
        ct = AESGCM(key).encrypt(nonce, orjson.dumps(personal), contact_id.encode())
        out[SEALED] = base64.b64encode(nonce + ct).decode()
    return out


def unseal(
    key: bytes | None, contact_id: str, data: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The event data with its personal fields back in place; and whether they were erased."""
    blob = data.get(SEALED)
    if blob is None:
        return dict(data), False
    out = {k: v for k, v in data.items() if k != SEALED}
    if key is None:
        return out, True
    raw = base64.b64decode(blob)
    try:
        out.update(orjson.loads(AESGCM(key).decrypt(raw[:12], raw[12:], contact_id.encode())))
    except InvalidTag:
        raise ValueError(f"sealed data of contact {contact_id} does not match its key") from None
    return out, False


class DataKeys:
    """The key table. Keys are read for each use, never cached: after an erasure no process
    may still decrypt."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ensure(
        self, contact_ids: Iterable[str], conn: asyncpg.Connection | None = None
    ) -> dict[str, bytes | None]:
        """Create keys for new contacts; return each contact's key (an existing one on a retry,
        None if it was destroyed). One statement."""
        ids = list(contact_ids)
        keys = [AESGCM.generate_key(bit_length=256) for _ in ids]
        rows = await (conn or self.pool).fetch(
            """INSERT INTO contacts_keys.data_keys AS k (contact_id, key)
               SELECT * FROM unnest($1::uuid[], $2::bytea[])
               ON CONFLICT (contact_id) DO UPDATE SET contact_id = k.contact_id
               RETURNING contact_id::text, key""",
            ids,
            keys,
        )
        return {r[0]: (bytes(r[1]) if r[1] is not None else None) for r in rows}

    async def get_many(
        self, contact_ids: Iterable[str], conn: asyncpg.Connection | None = None
    ) -> dict[str, bytes | None]:
        """Live keys by contact id; None for a destroyed key; absent when never created."""
        rows = await (conn or self.pool).fetch(
            """SELECT contact_id::text, key FROM contacts_keys.data_keys
               WHERE contact_id = ANY($1::uuid[])""",
            list(set(contact_ids)),
        )
        return {r[0]: (bytes(r[1]) if r[1] is not None else None) for r in rows}

    @staticmethod
    async def get_many_on(
        conn: asyncpg.Connection, contact_ids: Iterable[str]
    ) -> dict[str, bytes | None]:
        return await DataKeys(None).get_many(contact_ids, conn)

    async def get(self, contact_id: str) -> bytes | None:
        return (await self.get_many([contact_id])).get(contact_id)

    async def destroy(self, contact_id: str, conn: asyncpg.Connection | None = None) -> None:
        # The old row version keeps the key bytes until VACUUM reclaims it (and base backups
        # keep them for their retention); see the service canvas.
        await (conn or self.pool).execute(
            """UPDATE contacts_keys.data_keys SET key = NULL, destroyed_at = now()
               WHERE contact_id = $1 AND key IS NOT NULL""",
            contact_id,
        )
