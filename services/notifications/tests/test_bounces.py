"""Bounce and complaint reports: RFC 3464 DSNs as MTAs write them, RFC 5965 abuse reports, the
provider-neutral JSON form, and the soft-bounce rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain.bounces import (
    DETAIL_LIMIT,
    Report,
    ReportError,
    clean_detail,
    parse_json_report,
    parse_report_email,
    suppresses,
)

MESSAGE = "6f1c2a8e-3b7d-4c55-9a0e-2d4f1b9c8e71"


def dsn(
    *recipients: str, returned: str = f"<{MESSAGE}@mail.shop.example>", envid: str = ""
) -> bytes:
    """A DSN shaped like Postfix's: a human part, the delivery-status part, the headers."""
    per_message = "Reporting-MTA: dns; mx.shop.example\r\n"
    if envid:
        per_message += f"Original-Envelope-Id: {envid}\r\n"
    status = per_message + "".join(f"\r\n{r}" for r in recipients)
    return (
        "From: MAILER-DAEMON@mx.shop.example\r\n"
        "To: bounces@shop.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        f"\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n{status}\r\n"
        "\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {returned}\r\nSubject: Your cart\r\n"
        "\r\n--B--\r\n"
    ).encode()


HARD = (
    "Final-Recipient: rfc822; ada@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <ada@example.org>: Recipient address rejected\r\n"
)
SOFT = "Final-Recipient: rfc822; ada@example.org\r\nAction: failed\r\nStatus: 4.2.2\r\n"
DELAYED = "Final-Recipient: rfc822; bob@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n"


def test_a_failed_recipient_with_a_5xx_status_is_a_hard_bounce_named_by_the_returned_message_id() -> (
    None
):
    [report] = parse_report_email(dsn(HARD))
    assert report == Report(
        MESSAGE,
        "hard_bounce",
        "5.1.1",
        "smtp; 550 5.1.1 <<address>>: Recipient address rejected",
    )


def test_a_4xx_failure_is_soft_and_delays_and_deliveries_are_not_bounces() -> None:
    reports = parse_report_email(dsn(SOFT, DELAYED))
    assert [(r.kind, r.status) for r in reports] == [("soft_bounce", "4.2.2")]
    assert parse_report_email(dsn(DELAYED)) == []


def test_the_envelope_id_names_the_message_when_the_headers_do_not() -> None:
    [report] = parse_report_email(dsn(HARD, returned="<not-ours@elsewhere>", envid=MESSAGE))
    assert report.message_id == MESSAGE


def test_a_report_naming_no_message_of_ours_is_refused() -> None:
    with pytest.raises(ReportError) as err:
        parse_report_email(dsn(HARD, returned="<abc@elsewhere>"))
    assert err.value.reason == "UNKNOWN_MESSAGE"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"Subject: hello\r\n\r\nnot a report\r\n", "NOT_A_REPORT"),
        (
            b'Content-Type: multipart/report; report-type=disposition-notification; boundary="B"'
            b"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nread\r\n--B--\r\n",
            "UNSUPPORTED_REPORT",
        ),
        (dsn(HARD.replace("5.1.1", "550")), "INVALID_STATUS"),
    ],
)
def test_what_is_not_a_dsn_is_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ReportError) as err:
        parse_report_email(raw)
    assert err.value.reason == reason


def test_an_abuse_report_is_a_complaint_about_the_returned_message() -> None:
    raw = (
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Message-ID: <{MESSAGE}@mail.shop.example>\r\nSubject: Sale\r\n\r\nbody\r\n"
        "--F--\r\n"
    ).encode()
    [report] = parse_report_email(raw)
    assert (report.message_id, report.kind) == (MESSAGE, "complaint")


def test_the_json_form_takes_one_event_or_a_list() -> None:
    one = {"type": "complaint", "message_id": MESSAGE.upper()}
    assert parse_json_report(one) == [Report(MESSAGE, "complaint")]
    many = {
        "events": [
            {"type": "bounce", "bounce_type": "hard", "message_id": MESSAGE, "status": "5.1.1"},
            {"type": "bounce", "bounce_type": "soft", "message_id": MESSAGE, "detail": "full"},
        ]
    }
    assert [(r.kind, r.status, r.detail) for r in parse_json_report(many)] == [
        ("hard_bounce", "5.1.1", ""),
        ("soft_bounce", "", "full"),
    ]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"events": []}, "INVALID_REPORT"),
        ([], "INVALID_REPORT"),
        ({"events": ["x"]}, "INVALID_REPORT"),
        ({"type": "bounce", "message_id": MESSAGE}, "INVALID_REPORT"),
        ({"type": "opened", "message_id": MESSAGE}, "INVALID_REPORT"),
        ({"type": "complaint", "message_id": "ada@example.org"}, "UNKNOWN_MESSAGE"),
        ({"type": "complaint", "message_id": 7}, "UNKNOWN_MESSAGE"),
        ({"type": "complaint", "message_id": MESSAGE, "detail": 3}, "INVALID_REPORT"),
        ({"type": "complaint", "message_id": MESSAGE, "status": "550"}, "INVALID_STATUS"),
        ({"events": [{"type": "complaint", "message_id": MESSAGE}] * 1001}, "TOO_MANY_EVENTS"),
    ],
)
def test_bad_json_is_refused_with_a_reason(document: object, reason: str) -> None:
    with pytest.raises(ReportError) as err:
        parse_json_report(document)
    assert err.value.reason == reason


@given(st.text(max_size=2000))
def test_a_detail_is_one_short_line_without_addresses(text: str) -> None:
    detail = clean_detail(text + " reach ada.lovelace+x@example.org now")
    assert len(detail) <= DETAIL_LIMIT
    assert "\n" not in detail and "ada.lovelace" not in detail


NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def test_hard_bounces_and_complaints_suppress_at_once() -> None:
    assert suppresses("hard_bounce", [], NOW)
    assert suppresses("complaint", [], NOW)


def test_the_third_soft_bounce_within_seven_days_suppresses() -> None:
    day = timedelta(days=1)
    assert not suppresses("soft_bounce", [], NOW)
    assert not suppresses("soft_bounce", [NOW - day], NOW)
    assert suppresses("soft_bounce", [NOW - day, NOW - 6 * day], NOW)
    assert not suppresses("soft_bounce", [NOW - day, NOW - 7 * day], NOW)  # one is too old
