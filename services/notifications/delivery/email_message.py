"""An outbound email as the bytes an SMTP server receives (email.message.EmailMessage). Pure.

The text part is always there; with HTML the message is multipart/alternative (text first, as
RFC 2046 orders them, the richest last). The workers set Message-ID (from the message id, the
idempotency key: a resent message has the same one), Date, From, To and Subject; the
request's extra headers (List-Unsubscribe, …) follow, except those the workers own or that
would change the structure; a test message gets ``X-CRM-Test: 1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from email import policy
from email.message import EmailMessage
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


class BadMessage(ValueError):
    """The message cannot be sent as given (an address or a header that is not valid)."""


def message_id(message_id: str, domain: str) -> str:
    return f"<{message_id}@{domain}>"


def envelope_address(value: str) -> str:
    """The bare address of ``Name <a@b>`` or ``a@b`` (the SMTP envelope's)."""
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
) -> EmailMessage:
    envelope_address(sender)
    envelope_address(to)
    msg = EmailMessage(policy=policy.SMTP)
    try:
        msg["Message-ID"] = message_id(message_id_value, domain)
        msg["Date"] = format_datetime(now)
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject
        for name, value in headers:
            if name.lower() not in OWN_HEADERS:
                msg[name] = value
        if test:
            msg["X-CRM-Test"] = "1"
    except (ValueError, TypeError, IndexError) as exc:  # CR/LF in a value, a bad name
        raise BadMessage(f"a header is not valid: {exc}") from None
    msg.set_content(text or "")
    if html:
        msg.add_alternative(html, subtype="html")
    return msg


def to_bytes(msg: EmailMessage) -> bytes:
    """CRLF line ends, as SMTP DATA sends them; non-ASCII headers encoded (RFC 2047)."""
    try:
        return msg.as_bytes(policy=policy.SMTP)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise BadMessage(f"the message cannot be encoded: {exc}") from None


__all__ = ["BadMessage", "build", "envelope_address", "message_id", "to_bytes"]
