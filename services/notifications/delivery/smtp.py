"""Email over SMTP (stdlib smtplib, green after monkey patching): a pool of reused connections
to the relay, each send one MAIL/RCPT/DATA exchange whose reply codes are the outcome.

A connection is opened when no idle one is left and fewer than ``size`` exist (STARTTLS and
AUTH when configured), kept after a send, and dropped after a failure that leaves its state
unknown. A pooled connection the server closed while it was idle fails at MAIL FROM, before
anything was handed over: that send is tried once more on a fresh connection.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

from services.notifications.delivery.outcome import Result, smtp_result, unreachable


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    timeout: float
    starttls: bool = False
    ca_file: str = ""  # verify the relay against this CA bundle instead of the system's
    username: str = ""
    password: str = ""
    pool_size: int = 4


class Stale(Exception):
    """A pooled connection turned out closed before the send began."""


class ConnectRefused(Exception):
    """The relay refused this worker (greeting, EHLO, STARTTLS or AUTH): whatever its code, a
    matter of configuration or of the relay, not of the message, so RETRY."""


class SmtpPool:
    def __init__(self, config: SmtpConfig, on_size: Callable[[int], None] = lambda n: None):
        self.config = config
        self.idle: list[smtplib.SMTP] = []
        self.open = 0
        self.slots = threading.BoundedSemaphore(config.pool_size)
        self.lock = threading.Lock()
        self.on_size = on_size

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        conn = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        try:
            conn.ehlo()
            if c.starttls:
                conn.starttls(context=ssl.create_default_context(cafile=c.ca_file or None))
                conn.ehlo()
            if c.username:
                conn.login(c.username, c.password)
        except smtplib.SMTPResponseException as exc:
            _close(conn)
            raise ConnectRefused(f"smtp connect: {exc.smtp_code} {exc.smtp_error!r}") from None
        except BaseException:
            _close(conn)
            raise
        return conn

    def _sized(self, delta: int) -> None:
        with self.lock:
            self.open += delta
            self.on_size(self.open)

    def send(self, sender: str, to: str, data: bytes) -> Result:
        """One message: its outcome from the server's replies, or RETRY when it cannot be
        reached or the connection breaks."""
        with self.slots:
            with self.lock:
                conn = self.idle.pop() if self.idle else None
            fresh = conn is None
            try:
                if conn is None:
                    conn = self._connect()
                    self._sized(+1)
                try:
                    result = _exchange(conn, sender, to, data, reused=not fresh)
                except Stale:
                    self._drop(conn)
                    conn = self._connect()
                    self._sized(+1)
                    result = _exchange(conn, sender, to, data, reused=False)
            except ConnectRefused as exc:
                self._drop(conn)
                return unreachable("smtp", exc)
            except smtplib.SMTPResponseException as exc:  # DATA refused before the content
                self._drop(conn)
                return smtp_result(exc.smtp_code, exc.smtp_error)
            except (OSError, smtplib.SMTPException) as exc:  # refused, reset, timeout, TLS
                self._drop(conn)
                return unreachable("smtp", exc)
            with self.lock:
                self.idle.append(conn)
            return result

    def _drop(self, conn: smtplib.SMTP | None) -> None:
        if conn is not None and _close(conn):
            self._sized(-1)

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                conn.quit()
            self._drop(conn)


def _close(conn: smtplib.SMTP) -> bool:
    """Close ``conn``; True when it was counted as open (it had a socket)."""
    had = conn.sock is not None
    with contextlib.suppress(OSError):
        conn.close()
    return had


def _exchange(conn: smtplib.SMTP, sender: str, to: str, data: bytes, *, reused: bool) -> Result:
    """MAIL, RCPT and DATA for bare addresses (envelope_address's): the commands smtplib's
    mail() and rcpt() send for them, without parsing each address once more."""
    try:
        conn.putcmd("mail", f"FROM:<{sender}>")
        code, reply = conn.getreply()
    except smtplib.SMTPServerDisconnected as exc:
        if reused:
            raise Stale() from exc
        raise
    if code != 250:
        conn.rset()
        return smtp_result(code, reply)
    conn.putcmd("rcpt", f"TO:<{to}>")
    code, reply = conn.getreply()
    if code not in (250, 251):
        conn.rset()
        return smtp_result(code, reply)
    code, reply = conn.data(data)
    return smtp_result(code, reply)
