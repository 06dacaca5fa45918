"""The email as the stdlib's email.message.EmailMessage builds it (policy.SMTP): the oracle the
delivery workers' own byte writer (delivery/email_message.py) is compared with. Test code only.

This is the builder the workers used before they wrote the bytes themselves, kept as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from services.notifications.delivery.email_message import (
    OWN_HEADERS,
    BadMessage,
    envelope_address,
    message_id,
)


def oracle_bytes(
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
    try:
        return msg.as_bytes(policy=policy.SMTP)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise BadMessage(f"the message cannot be encoded: {exc}") from None
