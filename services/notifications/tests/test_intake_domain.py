"""The intake's pure parts: both signature schemes checked against their references (the
standardwebhooks library, Twilio's published example), the events a report becomes and when
it suppresses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from services.notifications.domain import intake, signatures
from services.notifications.domain.bounces import Report, clean_detail

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
MESSAGE = "6f1c2a8e-3b7d-4c55-9a0e-2d4f1b9c8e71"


@given(body=st.binary(max_size=300).map(lambda b: b.decode("latin-1").encode()))
def test_a_body_signed_by_the_reference_library_is_verified_and_any_change_is_not(
    body: bytes,
) -> None:
    key = signatures.webhook_key(SECRET)
    stamp = str(int(NOW.timestamp()))
    signature = Webhook(SECRET).sign("msg_1", NOW, body.decode())
    assert signatures.webhook_verified(key, "msg_1", stamp, signature, body, NOW)
    assert not signatures.webhook_verified(key, "msg_2", stamp, signature, body, NOW)
    assert not signatures.webhook_verified(key, "msg_1", stamp, signature, body + b"x", NOW)
    other = signatures.webhook_key("whsec_" + "A" * 32)
    assert not signatures.webhook_verified(other, "msg_1", stamp, signature, body, NOW)


def test_a_signature_list_may_carry_several_and_a_stale_timestamp_is_refused() -> None:
    key = signatures.webhook_key(SECRET)
    stamp = str(int(NOW.timestamp()))
    good = Webhook(SECRET).sign("m", NOW, "{}")
    assert signatures.webhook_verified(key, "m", stamp, f"v1,bm9wZQ== {good}", b"{}", NOW)
    later = NOW + signatures.TOLERANCE + timedelta(seconds=1)
    assert not signatures.webhook_verified(key, "m", stamp, good, b"{}", later)
    assert not signatures.webhook_verified(key, "m", "soon", good, b"{}", NOW)
    assert not signatures.webhook_verified(key, "m", stamp, "", b"{}", NOW)


@pytest.mark.parametrize("secret", ["whsec_***", "whsec_", "not base64!"])
def test_a_secret_that_is_not_base64_is_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        signatures.webhook_key(secret)


def test_the_twilio_signature_is_twilios_published_example() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    expected = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert signatures.twilio_signature("12345", url, params.items()) == expected
    assert signatures.twilio_verified("12345", url, params.items(), expected)
    assert not signatures.twilio_verified("12345", url + "&x=1", params.items(), expected)
    assert not signatures.twilio_verified("", url, params.items(), expected)


def test_a_hard_bounce_suppresses_at_once_a_soft_one_on_the_third_within_seven_days() -> None:
    hard = intake.report_event(Report(MESSAGE, "hard_bounce", "5.1.1", "x"), "json", [], NOW)
    assert hard == (
        intake.BOUNCED,
        {
            "message_id": MESSAGE,
            "bounce_type": intake.HARD,
            "source": "json",
            "suppress": True,
            "status": "5.1.1",
            "detail": "x",
        },
    )
    soft = Report(MESSAGE, "soft_bounce", "4.2.2")
    old = NOW - timedelta(days=8)
    recent = [NOW - timedelta(days=6), NOW - timedelta(hours=1)]
    _, second = intake.report_event(soft, "dsn", [old, recent[0]], NOW)
    assert (second["soft_bounce_count"], "suppress" in second) == (2, False)
    _, third = intake.report_event(soft, "dsn", [old, *recent], NOW)
    assert (third["soft_bounce_count"], third["suppress"]) == (3, True)
    assert intake.suppression_of((intake.BOUNCED, third))
    assert intake.suppression_of(intake.report_event(Report(MESSAGE, "complaint"), "arf", [], NOW))


def test_one_event_per_message_and_kind_and_sms_statuses() -> None:
    keys = {intake.report_key(Report(MESSAGE, k)) for k in ("hard_bounce", "soft_bounce")}
    assert len(keys) == 2
    assert intake.report_key(Report(MESSAGE, "hard_bounce", "5.1.1", "a")) == intake.report_key(
        Report(MESSAGE, "hard_bounce", "5.2.1", "b")
    )
    assert intake.sms_event(MESSAGE, "SM1", "delivered", "", 1)[0] == intake.DELIVERED
    failed = intake.sms_event(MESSAGE, "SM1", "undelivered", "30003", 2)
    assert failed[1] == {
        "message_id": MESSAGE,
        "attempt": 2,
        "detail": "gateway: undelivered, error 30003",
        "final": True,
    }
    assert "sent" not in intake.SMS_FINAL and "queued" not in intake.SMS_FINAL


def test_a_detail_keeps_printable_characters_only() -> None:
    assert clean_detail("550\x00 user\x07 unknown\r\n at <a@b.example>") == (
        "550 user unknown at <<address>>"
    )
