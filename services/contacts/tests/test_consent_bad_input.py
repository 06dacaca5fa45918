"""Bad requests to every ConsentService RPC: a clear error naming the field, and nothing
written."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from crm.contacts.v1 import consent_pb2 as pb
from services.contacts.domain import consent as domain
from services.contacts.tests.conftest import ConsentEnv
from services.contacts.tests.helpers import (
    CONSENT,
    EMAIL,
    NEVER,
    PENDING,
    PUSH,
    SMS,
    SUB,
    UNSUB,
    expect_error,
    ts,
)


def unknown(number: int) -> Any:
    """An enum number the proto does not define (what an older or newer client may send)."""
    return number


def _long(n: int) -> str:
    return "x" * n


Make = Callable[[str], Any]
BAD_INPUT: list[tuple[str, str, Make, grpc.StatusCode, str]] = [
    # (name, method, request from a real contact id, code, reason)
    (
        "no-contact-id",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(channel=EMAIL, state=UNSUB),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "bad-contact-id",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id="123", channel=EMAIL, state=UNSUB),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "unknown-contact",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=str(uuid.uuid4()), channel=EMAIL, state=UNSUB),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "no-channel",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=c, state=SUB, legal_basis=CONSENT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CHANNEL_REQUIRED",
    ),
    (
        "unknown-channel",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=unknown(99), state=SUB, legal_basis=CONSENT
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CHANNEL",
    ),
    (
        "no-state",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=c, channel=EMAIL, legal_basis=CONSENT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "STATE_REQUIRED",
    ),
    (
        "state-never",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=c, channel=EMAIL, state=NEVER),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_STATE",
    ),
    (
        "state-pending",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=PENDING, legal_basis=CONSENT
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_STATE",
    ),
    (
        "unknown-state",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=unknown(42), legal_basis=CONSENT
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_STATE",
    ),
    (
        "no-legal-basis",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(contact_id=c, channel=EMAIL, state=SUB),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LEGAL_BASIS_REQUIRED",
    ),
    (
        "unknown-legal-basis",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=SUB, legal_basis=unknown(77)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_LEGAL_BASIS",
    ),
    (
        "long-source",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=SUB, legal_basis=CONSENT, source=_long(201)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "long-policy",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=SUB, legal_basis=CONSENT, policy_version=_long(65)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "long-user-agent",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c,
            channel=EMAIL,
            state=SUB,
            legal_basis=CONSENT,
            evidence=pb.ConsentEvidence(user_agent=_long(513)),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "bad-ip",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c,
            channel=EMAIL,
            state=SUB,
            legal_basis=CONSENT,
            evidence=pb.ConsentEvidence(ip="10.0.0.256"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_IP",
    ),
    (
        "double-opt-in-unsubscribe",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=UNSUB, double_opt_in=True
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_DOUBLE_OPT_IN",
    ),
    (
        "future-occur-time",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c,
            channel=EMAIL,
            state=UNSUB,
            occur_time=ts(datetime.now(UTC) + timedelta(days=1)),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_OCCUR_TIME",
    ),
    (
        "bad-occur-time",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=UNSUB, occur_time=Timestamp(seconds=2**62)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_OCCUR_TIME",
    ),
    (
        "long-request-id",
        "RecordConsent",
        lambda c: pb.RecordConsentRequest(
            contact_id=c, channel=EMAIL, state=UNSUB, request_id=_long(129)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST_ID",
    ),
    (
        "no-token",
        "ConfirmConsent",
        lambda c: pb.ConfirmConsentRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOKEN_REQUIRED",
    ),
    (
        "bad-token",
        "ConfirmConsent",
        lambda c: pb.ConfirmConsentRequest(token="../../etc/passwd"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TOKEN",
    ),
    (
        "unknown-token",
        "ConfirmConsent",
        lambda c: pb.ConfirmConsentRequest(token=domain.make_token(c, bytes(32))),
        grpc.StatusCode.NOT_FOUND,
        "TOKEN_NOT_FOUND",
    ),
    (
        "confirm-long-request-id",
        "ConfirmConsent",
        lambda c: pb.ConfirmConsentRequest(token="x", request_id=_long(129)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST_ID",
    ),
    (
        "get-no-contact-id",
        "GetConsent",
        lambda c: pb.GetConsentRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "get-unknown-contact",
        "GetConsent",
        lambda c: pb.GetConsentRequest(contact_id=str(uuid.uuid4())),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "get-unknown-contact-as-of",
        "GetConsent",
        lambda c: pb.GetConsentRequest(
            contact_id=str(uuid.uuid4()), as_of_time=ts(datetime.now(UTC))
        ),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "get-future",
        "GetConsent",
        lambda c: pb.GetConsentRequest(
            contact_id=c, as_of_time=ts(datetime.now(UTC) + timedelta(days=1))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_AS_OF_TIME",
    ),
    (
        "get-bad-as-of",
        "GetConsent",
        lambda c: pb.GetConsentRequest(contact_id=c, as_of_time=Timestamp(seconds=-(2**62))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_AS_OF_TIME",
    ),
    (
        "history-bad-contact-id",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id="nope"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "history-unknown-contact",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=str(uuid.uuid4())),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "history-negative-page",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=c, page_size=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    ),
    (
        "history-huge-page",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=c, page_size=5000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    ),
    (
        "history-bad-token",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=c, page_token="garbage"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    ),
    (
        "history-unknown-channel",
        "GetConsentHistory",
        lambda c: pb.GetConsentHistoryRequest(contact_id=c, channel=unknown(7)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CHANNEL",
    ),
    (
        "suppress-no-channel",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(contact_id=c, reason=pb.SUPPRESSION_REASON_MANUAL),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CHANNEL_REQUIRED",
    ),
    (
        "suppress-unknown-channel",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(
            contact_id=c, channel=unknown(9), reason=pb.SUPPRESSION_REASON_MANUAL
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CHANNEL",
    ),
    (
        "suppress-no-reason",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(contact_id=c, channel=EMAIL),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REASON_REQUIRED",
    ),
    (
        "suppress-unknown-reason",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(contact_id=c, channel=EMAIL, reason=unknown(12)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REASON",
    ),
    (
        "suppress-long-note",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(
            contact_id=c, channel=EMAIL, reason=pb.SUPPRESSION_REASON_MANUAL, note=_long(501)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "suppress-bad-contact-id",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(
            contact_id="x", channel=EMAIL, reason=pb.SUPPRESSION_REASON_MANUAL
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONTACT_ID",
    ),
    (
        "suppress-unknown-contact",
        "SuppressChannel",
        lambda c: pb.SuppressChannelRequest(
            contact_id=str(uuid.uuid4()), channel=EMAIL, reason=pb.SUPPRESSION_REASON_MANUAL
        ),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
    (
        "unsuppress-no-channel",
        "UnsuppressChannel",
        lambda c: pb.UnsuppressChannelRequest(contact_id=c),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CHANNEL_REQUIRED",
    ),
    (
        "unsuppress-long-note",
        "UnsuppressChannel",
        lambda c: pb.UnsuppressChannelRequest(contact_id=c, channel=SMS, note=_long(501)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    ),
    (
        "unsuppress-unknown-contact",
        "UnsuppressChannel",
        lambda c: pb.UnsuppressChannelRequest(contact_id=str(uuid.uuid4()), channel=SMS),
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    ),
]


@pytest.mark.parametrize(
    ("method", "make", "code", "reason"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
async def test_bad_input_is_a_clear_error_and_writes_nothing(
    consent_env: ConsentEnv, method: str, make: Make, code: grpc.StatusCode, reason: str
) -> None:
    cid = await consent_env.contact()
    await consent_env.record(
        cid, channel=PUSH
    )  # a ledger that exists, so "nothing written" means something
    before = await consent_env.event_count()
    await expect_error(getattr(consent_env.stub, method)(make(cid)), code, reason)
    assert await consent_env.event_count() == before


async def test_validation_reports_every_field(consent_env: ConsentEnv) -> None:
    cid = await consent_env.contact()
    violations = await expect_error(
        consent_env.stub.RecordConsent(
            pb.RecordConsentRequest(
                contact_id=cid,
                channel=EMAIL,
                state=SUB,
                evidence=pb.ConsentEvidence(ip="nope"),
                occur_time=ts(datetime.now(UTC) + timedelta(days=3)),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LEGAL_BASIS_REQUIRED",
    )
    # (an over-long field would be refused before this: the request limits come first)
    assert violations == ["legal_basis", "evidence.ip", "occur_time"]
