"""Checkpoint signing and reading (shared/eventstore/audit/checkpoints.py), and what every
verification checks of a sequence of checkpoints before looking at the log. No database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.eventstore.audit.checkpoints import (
    DEV_KEY_ID,
    DEV_SIGNING_KEY,
    Checkpoint,
    CheckpointFormatError,
    SigningKey,
    parse_public_key,
)
from shared.eventstore.audit.report import Report, trusted_checkpoints

AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def chain(key: SigningKey, n: int) -> list[Checkpoint]:
    out: list[Checkpoint] = []
    for i in range(n):
        out.append(
            key.sign(
                number=i + 1,
                position=100 * (i + 1),
                at=AT,
                streams=i + 1,
                root=bytes([i]) * 32,
                previous=out[-1].digest() if out else b"",
            )
        )
    return out


def test_a_checkpoint_reads_back_from_its_json_line_and_verifies() -> None:
    key = SigningKey.generate()
    (cp,) = chain(key, 1)
    line = orjson.dumps(cp.to_json())
    again = Checkpoint.from_json(orjson.loads(line))
    assert again == cp and again.signed_by(key.public_key) and again.at == AT
    assert orjson.loads(cp.payload()) == {
        "format": "crm-checkpoint/1",
        "number": 1,
        "position": 100,
        "time": "2026-03-01T12:00:00.123456Z",
        "streams": 1,
        "root": "00" * 32,
        "previous": "",
        "key_id": key.key_id,
    }
    for field, value in [("position", 101), ("streams", 2), ("root", b"\x01" * 32)]:
        assert not replace(cp, **{field: value}).signed_by(key.public_key)  # type: ignore[arg-type]
    assert not cp.signed_by(SigningKey.generate().public_key)
    with pytest.raises(CheckpointFormatError, match="without 'root'"):
        Checkpoint.from_json({k: v for k, v in cp.to_json().items() if k != "root"})
    with pytest.raises(CheckpointFormatError, match="not a crm-checkpoint/1"):
        Checkpoint.from_json({**cp.to_json(), "format": "other"})


def test_keys_are_read_as_base64_or_pem() -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key = SigningKey.parse(pem)
    assert SigningKey.parse(key.private_text()).public_key == key.public_key
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert parse_public_key(public_pem) == key.public_key
    for bad in ["", "not base64!", "c2hvcnQ=", "-----BEGIN PRIVATE KEY-----\nxx\n"]:
        with pytest.raises(CheckpointFormatError):
            SigningKey.parse(bad)
    with pytest.raises(CheckpointFormatError, match="32 bytes"):
        parse_public_key("c2hvcnQ=")
    assert SigningKey.parse(DEV_SIGNING_KEY).key_id == DEV_KEY_ID


def test_the_sequence_is_checked_before_the_log() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    cps = chain(key, 4)

    def kinds(checkpoints: list[Checkpoint], pinned: list[bytes]) -> list[str]:
        report = Report()
        trusted_checkpoints(checkpoints, pinned, report)
        return [f.kind for f in report.findings.items]

    assert kinds(cps, [key.public_key]) == []
    assert kinds(list(reversed(cps)), [other.public_key, key.public_key]) == []  # a rotation
    assert kinds([cps[0], cps[2], cps[3]], [key.public_key]) == ["checkpoint_sequence"]
    relinked = replace(cps[2], previous=b"\x00" * 32)
    assert kinds([cps[1], relinked], []) == ["forged_checkpoint", "checkpoint_sequence"]
    assert kinds(cps, [other.public_key]) == ["forged_checkpoint"] * 4
    switched = chain(other, 4)[3]  # unpinned: a change of key is not taken on trust
    assert kinds([*cps[:3], switched], []) == ["forged_checkpoint", "checkpoint_sequence"]
    dev = chain(SigningKey.parse(DEV_SIGNING_KEY), 1)
    report = Report()
    assert trusted_checkpoints(dev, [], report) == dev
    assert any("development key" in n for n in report.notes)
