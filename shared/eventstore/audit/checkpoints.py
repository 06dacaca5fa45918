"""Signed checkpoints (docs/architecture.md §2a). No I/O: the model, its canonical bytes, and
Ed25519 signing and checking.

A checkpoint says: "as of global position P, at time T, the log held S streams whose heads make
the Merkle root R" (shared/eventstore/merkle.py), numbered, linked to the previous checkpoint
by the SHA-256 of its signed payload, and signed with Ed25519. The signed payload is the
canonical JSON (sorted keys, no spaces) of every field but the public key and the signature;
the key id in it is the first 8 bytes (hex) of SHA-256 of the raw 32-byte public key, which each
checkpoint also publishes beside the signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.domain.timestamps import timestamp_from_text, timestamp_text

FORMAT = "crm-checkpoint/1"
# The development key `make run` and docker-compose sign with. It is public: checkpoints signed
# with it prove nothing, and the verifier says so.
DEV_SIGNING_KEY = base64.b64encode(hashlib.sha256(b"crm-suite development key").digest()).decode()


class CheckpointFormatError(ValueError):
    """A checkpoint (or key) that cannot be read."""


def key_id_of(public_key: bytes) -> str:
    return hashlib.sha256(public_key).digest()[:8].hex()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise CheckpointFormatError(f"{what} is not base64") from None


def unhex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except (ValueError, TypeError):
        raise CheckpointFormatError(f"{what} is not hex") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    number: int  # 1, 2, 3, … in the order they were written
    position: int  # global position: the last event it covers (heads as of position <= this)
    time: str  # when it was written, RFC 3339 UTC (shared/domain/timestamps.py)
    streams: int  # leaves of the tree: streams with at least one event at or below position
    root: bytes  # Merkle root over the stream heads
    previous: bytes  # digest() of checkpoint number - 1; b"" for the first
    key_id: str
    public_key: bytes  # raw Ed25519 public key (32 bytes)
    signature: bytes  # Ed25519 over payload()

    def payload(self) -> bytes:
        """The canonical bytes the signature covers."""
        return orjson.dumps(
            {
                "format": FORMAT,
                "number": self.number,
                "position": self.position,
                "time": self.time,
                "streams": self.streams,
                "root": self.root.hex(),
                "previous": self.previous.hex(),
                "key_id": self.key_id,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    def digest(self) -> bytes:
        """What the next checkpoint's ``previous`` holds."""
        return hashlib.sha256(self.payload()).digest()

    @property
    def at(self) -> datetime:
        return timestamp_from_text(self.time)

    def signed_by(self, public_key: bytes) -> bool:
        """Does the signature verify with this raw public key?"""
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(self.signature, self.payload())
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        """One line of `crm audit checkpoint`."""
        body: dict[str, Any] = orjson.loads(self.payload())
        body["public_key"] = b64(self.public_key)
        body["signature"] = b64(self.signature)
        return body

    @classmethod
    def from_json(cls, body: Any) -> Checkpoint:
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise CheckpointFormatError(f"not a {FORMAT} checkpoint")
        try:
            number, position, streams = body["number"], body["position"], body["streams"]
            time, key_id = body["time"], body["key_id"]
            root, previous = body["root"], body["previous"]
            public_key, signature = body["public_key"], body["signature"]
        except KeyError as missing:
            raise CheckpointFormatError(f"checkpoint without {missing}") from None
        if not all(isinstance(v, int) and v >= 0 for v in (number, position, streams)):
            raise CheckpointFormatError("number, position and streams must be integers >= 0")
        if not all(isinstance(v, str) for v in (time, key_id, root, previous)):
            raise CheckpointFormatError("time, key_id, root and previous must be text")
        return cls(
            number=number,
            position=position,
            time=time,
            streams=streams,
            root=unhex(root, "root"),
            previous=unhex(previous, "previous"),
            key_id=key_id,
            public_key=unb64(public_key, "public_key"),
            signature=unb64(signature, "signature"),
        )


class SigningKey:
    """The Ed25519 private key checkpoints are signed with (``CHECKPOINT_SIGNING_KEY``)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> SigningKey:
        """The base64 of the 32-byte private key (what `crm audit keygen` prints), or a PEM
        (PKCS#8) private key."""
        text = text.strip()
        if text.startswith("-----BEGIN"):
            try:
                key = serialization.load_pem_private_key(text.encode(), password=None)
            except (ValueError, TypeError):
                raise CheckpointFormatError("the PEM is not an unencrypted private key") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise CheckpointFormatError("the PEM key is not an Ed25519 key")
            return cls(key)
        seed = unb64(text, "the signing key")
        if len(seed) != 32:
            raise CheckpointFormatError("the signing key must be 32 bytes (base64) or a PEM")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def private_text(self) -> str:
        return b64(
            self._private.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )

    def sign(
        self,
        *,
        number: int,
        position: int,
        at: datetime,
        streams: int,
        root: bytes,
        previous: bytes,
    ) -> Checkpoint:
        unsigned = Checkpoint(
            number, position, timestamp_text(at), streams, root, previous, self.key_id, b"", b""
        )
        signature = self._private.sign(unsigned.payload())
        return Checkpoint(
            number,
            position,
            unsigned.time,
            streams,
            root,
            previous,
            self.key_id,
            self.public_key,
            signature,
        )


def parse_public_key(text: str) -> bytes:
    """A public key as an auditor pins it: the base64 of the raw 32 bytes (a checkpoint's
    ``public_key``, `crm audit keygen`'s output) or a PEM (SubjectPublicKeyInfo)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, TypeError):
            raise CheckpointFormatError("the PEM is not a public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise CheckpointFormatError("the PEM key is not an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raw = unb64(text, "the public key")
    if len(raw) != 32:
        raise CheckpointFormatError("an Ed25519 public key has 32 bytes")
    return raw


DEV_KEY_ID = SigningKey.parse(DEV_SIGNING_KEY).key_id
