"""An outbound email as the bytes an SMTP server receives, written directly. Pure.

The text part is always there; with HTML the message is multipart/alternative (text first, as
RFC 2046 orders them, the richest last). The workers set Message-ID (from the message id, the
idempotency key: a resent message has the same one), Date, From, To and Subject; the
request's extra headers (List-Unsubscribe, …) follow, except those the workers own or that
would change the structure (Content-*); a test message gets ``X-CRM-Test: 1``.

The bytes are those the stdlib's email.message.EmailMessage writes under policy.SMTP (CRLF
line ends, lines of at most 78 characters, bodies in 7bit or 8bit when their lines are short,
else quoted-printable or base64 as the stdlib chooses), without building that object: a
plain ASCII header that fits on a line is written as given, any other (non-ASCII, long, an
address with quotes or comments, a structured extra header) is folded and RFC 2047-encoded by
the stdlib's header classes, one header at a time. The property tests in
tests/test_email_message.py compare the bytes with what EmailMessage builds.
"""

from __future__ import annotations

import binascii
import functools
import random
import re
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta
from email import policy, quoprimime
from email.headerregistry import UnstructuredHeader
from email.utils import format_datetime, parseaddr

OWN_HEADERS = frozenset(
    {
        "message-id",
        "date",
        "from",
        "to",
        "subject",
        "x-crm-test",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "bcc",
        "cc",
    }
)
MAX_LINE = 78  # policy.SMTP's max_line_length, of headers and of 7bit/8bit body lines
_POLICY = policy.SMTP
_REGISTRY = _POLICY.header_factory.registry  # type: ignore[attr-defined]
# Extra headers the stdlib parses as addresses, dates, ids or MIME fields: never written as given.
_STRUCTURED = frozenset(k for k, c in _REGISTRY.items() if not issubclass(c, UnstructuredHeader))
_MAX_COUNT = {k: c.max_count for k, c in _REGISTRY.items() if c.max_count}
_NAME = re.compile(r"[!-9;-~]+\Z")  # RFC 5322 ftext: printable ASCII but the colon
# What str.splitlines breaks at: a value holding one of these is two lines (header injection).
_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_WORDS = re.compile(r"[!-~]+(?: [!-~]+)*\Z")  # printable ASCII words, single spaces
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR = rf"{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*"
_MAILBOX = re.compile(rf"(?:{_ATEXT}(?: {_ATEXT})* <{_ADDR}>|{_ADDR})\Z")
_MSGID = re.compile(rf"<{_ADDR}>\Z")


class BadMessage(ValueError):
    """The message cannot be sent as given (an address or a header that is not valid)."""


def message_id(message_id: str, domain: str) -> str:
    return f"<{message_id}@{domain}>"


def envelope_address(value: str) -> str:
    """The bare address of ``Name <a@b>`` or ``a@b`` (the SMTP envelope's): read by the
    stdlib's parseaddr, or without it when the value is that simple (the same answer)."""
    if _MAILBOX.match(value):
        return value[value.index("<") + 1 : -1] if value.endswith(">") else value
    _, address = parseaddr(value)
    if "@" not in address or any(c in address for c in "\r\n <>"):
        raise BadMessage(f"not an email address: {value[:100]!r}")
    return address


def build(
    *,
    message_id_value: str,
    domain: str,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    headers: Iterable[tuple[str, str]],
    test: bool,
    now: datetime,
) -> bytes:
    """The message, ready for SMTP DATA; BadMessage when an address or a header is not valid."""
    envelope_address(sender)
    envelope_address(to)
    lines = [
        _header("Message-ID", message_id(message_id_value, domain), _MSGID),
        _date(now),
        _header("From", sender, _MAILBOX),
        _header("To", to, _MAILBOX),
        _header("Subject", subject, _WORDS),
    ]
    lines += _extra_headers(headers)
    if test:
        lines.append("X-CRM-Test: 1\r\n")
    try:
        head = "".join(lines).encode("ascii")
    except UnicodeEncodeError as exc:
        raise BadMessage(f"the message cannot be encoded: {exc}") from None
    plain_cte, plain = _body(text)
    if not html:
        return b"".join((head, _part_head("plain", plain_cte, mime_version=True), plain))
    html_cte, rich = _body(html)
    boundary = _boundary(plain, rich).encode("ascii")
    return b"".join(
        (
            head,
            b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="%b"\r\n'
            b"\r\n--%b\r\n" % (boundary, boundary),
            _part_head("plain", plain_cte, mime_version=False),
            plain,
            b"\r\n--%b\r\n" % boundary,
            # The stdlib gives the added alternative its own MIME-Version: kept, as sent before.
            _part_head("html", html_cte, mime_version=True),
            rich,
            b"\r\n--%b--\r\n" % boundary,
        )
    )


def _date(now: datetime) -> str:
    """The Date header (whole seconds: the workers ask for the same one all second long)."""
    return _date_at(now, now.utcoffset())  # equal instants in other zones are other texts


@functools.lru_cache(maxsize=4)
def _date_at(now: datetime, _offset: timedelta | None) -> str:
    return f"Date: {format_datetime(now)}\r\n"


def _extra_headers(headers: Iterable[tuple[str, str]]) -> list[str]:
    lines: list[str] = []
    seen: dict[str, int] = {}
    for name, value in headers:
        key = name.lower()
        if key in OWN_HEADERS:
            continue
        if not _NAME.match(name):
            raise BadMessage(f"a header name is not valid: {name[:100]!r}")
        limit = _MAX_COUNT.get(key)
        if limit is not None:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > limit:
                raise BadMessage(f"a header is not valid: at most {limit} {name} header")
        folded = _header(name, value, None if key in _STRUCTURED else _WORDS)
        if not key.startswith("content-"):  # the body's own Content-* headers replace them
            lines.append(folded)
    return lines


def _header(name: str, value: str, plain: re.Pattern[str] | None) -> str:
    """``Name: value`` and CRLF: as given when ``plain`` matches and it fits on a line, else
    folded and encoded by the stdlib's header class for ``name``."""
    if _BREAK.search(value):
        raise BadMessage(f"a header is not valid: {name} holds a line break")
    if (
        plain is not None
        and len(name) + len(value) + 2 <= MAX_LINE
        and plain.match(value)
        and "=?" not in value  # would read as an RFC 2047 encoded word
    ):
        return f"{name}: {value}\r\n"
    try:
        return str(_POLICY.header_factory(name, value).fold(policy=_POLICY))
    except (ValueError, TypeError, IndexError, AttributeError) as exc:  # the parser's, on junk
        raise BadMessage(f"a header is not valid: {exc}") from None


def _part_head(subtype: str, cte: str, *, mime_version: bool) -> bytes:
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    return (head + ("MIME-Version: 1.0\r\n\r\n" if mime_version else "\r\n")).encode("ascii")


def _body(content: str) -> tuple[str, bytes]:
    """The transfer encoding and the encoded body, CRLF line ends: the stdlib's choice (its
    contentmanager's heuristic): 7bit or 8bit when no line is longer than 78 bytes, else
    quoted-printable unless base64 is shorter for the first ten lines."""
    lines = content.encode("utf-8").splitlines()
    if max(map(len, lines), default=0) <= MAX_LINE:
        body = b"\r\n".join(lines) + b"\r\n"
        return ("7bit" if body.isascii() else "8bit"), body
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    qp = quoprimime.body_encode(sniff.decode("latin-1"), MAX_LINE)
    if len(qp) > len(binascii.b2a_base64(sniff)):
        data = b"\r\n".join(lines) + b"\r\n"
        step = MAX_LINE // 4 * 3
        chunks = (
            binascii.b2a_base64(data[i : i + step], newline=False)
            for i in range(0, len(data), step)
        )
        return "base64", b"".join(c + b"\r\n" for c in chunks)
    if len(lines) > 10:
        qp = quoprimime.body_encode(b"\n".join(lines).decode("latin-1") + "\n", MAX_LINE)
    return "quoted-printable", qp.replace("\n", "\r\n").encode("ascii")


def _boundary(*parts: bytes) -> str:
    """A boundary the stdlib's way (15 '=', 19 random digits, '=='), found in no part."""
    boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
    candidate, counter = boundary, 0
    while any(b"--=====" in part for part in parts) and any(
        b"--" + candidate.encode("ascii") in part for part in parts
    ):
        candidate = f"{boundary}.{counter}"
        counter += 1
    return candidate


__all__ = ["BadMessage", "build", "envelope_address", "message_id"]
