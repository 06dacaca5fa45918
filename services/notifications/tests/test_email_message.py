"""The delivery workers' email bytes (delivery/email_message.py) against the stdlib's
EmailMessage (tests/email_oracle.py): the same bytes but for the multipart boundary's random
digits, hence the same headers, parts and decoded content for any mail client, over generated
subjects, addresses, bodies and extra headers (non-ASCII, long lines, long headers, empty)."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.notifications.delivery import email_message
from services.notifications.tests.email_oracle import oracle_bytes

BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# Printable ASCII, spaces and tabs, Latin letters, a CJK one, an emoji, a control character.
CHARS = st.characters(exclude_categories=["Cs"], exclude_characters=BREAKS)
SOME = st.sampled_from([*" \t=?_\"'<>@,.;:()\\é€漢🛒\x00\x7f", "=?utf-8?q?caf=C3=A9?="])
TEXTY = st.lists(st.one_of(st.text(CHARS, max_size=30), SOME), max_size=12).map("".join)
LONG = st.builds(
    lambda w, n: " ".join([w] * n), st.sampled_from(["word", "wörd", "x" * 90]), st.integers(1, 40)
)
VALUES = st.one_of(TEXTY, LONG, st.just(""))

ATEXT = st.text("abcxyzABC019.!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=20)
ADDRESS = st.builds(
    lambda a, b: f"{a}@{b}.example", ATEXT, st.text("abc-", min_size=1, max_size=10)
)
NAMES = st.one_of(
    st.just(""),
    st.sampled_from(["Shop", "Shop Inc.", '"Ada, L."', "Café ☕", "=?utf-8?q?x?="]),
    TEXTY,
)
MAILBOX = st.one_of(ADDRESS, st.builds(lambda n, a: f"{n} <{a}>", NAMES, ADDRESS))

BODY_LINES = st.one_of(
    st.text(CHARS, max_size=40),
    st.sampled_from(["", ".", "From here", "x" * 78, "x" * 79, "é" * 40, "a=b " * 30, "--==="]),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["a", "é", " ", "=", "\t", "🛒"]), st.integers(0, 300)
    ),
)
BODIES = st.tuples(
    st.lists(BODY_LINES, max_size=14), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans()
).map(lambda t: t[1].join(t[0]) + (t[1] if t[2] else ""))

HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "X-Tag",
            "Reply-To",
            "Sender",
            "Resent-Date",
            "Comments",
            "Content-Disposition",
            "Content-Language",
            "Message-ID",
            "Subject",
            "bcc",
            "MIME-Version",
        ]
    ),
    st.text("abcXYZ-_019!#.~", min_size=1, max_size=70),
)
HEADERS = st.lists(st.tuples(HEADER_NAMES, VALUES), max_size=4)
NOW = st.builds(
    lambda s, m: (
        datetime(2026, 3, 1, tzinfo=UTC).astimezone(timezone(timedelta(minutes=m)))
        + timedelta(seconds=s)
    ),
    st.integers(0, 10**8),
    st.integers(-720, 840),
)
FIELDS = st.fixed_dictionaries(
    {
        "message_id_value": st.one_of(st.uuids().map(str), ATEXT, TEXTY),
        "domain": st.sampled_from(["mail.shop.example", "bench.crm.localhost", "x y"]),
        "sender": MAILBOX,
        "to": MAILBOX,
        "subject": VALUES,
        "text": BODIES,
        "html": st.one_of(st.just(""), BODIES),
        "headers": HEADERS,
        "test": st.booleans(),
        "now": NOW,
    }
)
BASE: dict[str, Any] = {
    "message_id_value": "0c6f-id",
    "domain": "mail.shop.example",
    "sender": "Shop <news@shop.example>",
    "to": "ada@example.com",
    "subject": "Hello",
    "text": "text body",
    "html": "",
    "headers": (),
    "test": False,
    "now": datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
}


def outcome(build: Any, fields: dict[str, Any]) -> bytes | None:
    """The bytes, the boundary's random part replaced; None for BadMessage (or, from the
    stdlib's builder, any error: its address parser fails on some junk, e.g. ``. <a@b>``)."""
    try:
        data: bytes = build(**fields)
    except email_message.BadMessage:
        return None
    except (AttributeError, IndexError, TypeError, ValueError):
        if build is email_message.build:
            raise
        return None
    found = re.search(rb'boundary="(=+\d{19}==)', data)
    return data.replace(found.group(1), b"BOUNDARY") if found else data


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def readable(name: str, raw: str) -> str:
    """A header's value as the stdlib parser reads it (which fails on some junk addresses)."""
    try:
        return str(email.policy.default.header_fetch_parse(name, raw))
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        return f"unreadable: {type(exc).__name__}"


def seen(msg: EmailMessage) -> list[object]:
    """What a mail client reads: every part's headers (decoded) and decoded content."""
    out: list[object] = []
    for part in msg.walk():
        out.append([(k, readable(k, v)) for k, v in part.raw_items()])
        out.append(part.get_content_type())
        if not part.is_multipart():
            assert isinstance(part, EmailMessage)
            out.append(part.get_content())
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FIELDS)
@example(BASE)
@example(BASE | {"html": "<p>hi</p>" * 40, "text": "", "test": True})
@example(BASE | {"subject": "Café " * 30, "sender": "Café <a@b.example>", "text": "héllo\n" * 3})
@example(BASE | {"text": ("é" * 80 + "\n") * 12, "html": "=" * 200})
@example(BASE | {"text": "--===============0000000000000000000==\n", "html": "x"})
def test_the_same_email_as_the_stdlib_builds(fields: dict[str, Any]) -> None:
    ours, theirs = outcome(email_message.build, fields), outcome(oracle_bytes, fields)
    assert ours == theirs
    if ours is not None and theirs is not None:
        assert b"\r\n" in ours and b"\n" not in ours.replace(b"\r\n", b"")
        assert seen(parsed(ours)) == seen(parsed(theirs))


@given(FIELDS, st.sampled_from(BREAKS), st.integers(0, 5), st.data())
def test_a_line_break_in_any_header_value_is_a_bad_message(
    fields: dict[str, Any], brk: str, where: int, data: st.DataObject
) -> None:
    field = data.draw(st.sampled_from(["subject", "sender", "to", "message_id_value", "extra"]))
    if field == "extra":
        fields["headers"] = [*fields["headers"], ("X-Tag", f"a{brk}Bcc: spy@example.com")]
    else:
        value = fields[field]
        fields[field] = value[:where] + brk + value[where:]
    with pytest.raises(email_message.BadMessage):
        email_message.build(**fields)


@pytest.mark.parametrize(
    "name", ["Bcc: spy@example.com\r\nX-A", "X Tag", "X:Tag", "", "Tág", "X-A\nB"]
)
def test_a_header_name_that_is_not_a_field_name_is_a_bad_message(name: str) -> None:
    """(EmailMessage wrote such a name as given: with a line break, a header of the caller's.)"""
    with pytest.raises(email_message.BadMessage):
        email_message.build(**BASE | {"headers": ((name, "1"),)})


def test_a_second_reply_to_is_a_bad_message_and_content_headers_are_dropped() -> None:
    twice = (("Reply-To", "a@example.com"), ("Reply-To", "b@example.com"))
    with pytest.raises(email_message.BadMessage):
        email_message.build(**BASE | {"headers": twice})
    msg = parsed(
        email_message.build(
            **BASE | {"headers": (("Content-Disposition", "attachment"), ("X-Tag", "1"))}
        )
    )
    assert msg["Content-Disposition"] is None and msg["X-Tag"] == "1"


@settings(max_examples=300)
@given(MAILBOX)
def test_envelope_addresses_are_those_parseaddr_reads(value: str) -> None:
    _, address = parseaddr(value)
    if "@" not in address or any(c in address for c in "\r\n <>"):
        with pytest.raises(email_message.BadMessage):
            email_message.envelope_address(value)
    else:
        assert email_message.envelope_address(value) == address
