"""A real SMTP server for the delivery tests and the bench (aiosmtpd, in its own process):
``python -m services.notifications.tests.smtp_sink PORT RECORD [USER:PASSWORD] [CERT KEY]``.

Appends one JSON line per accepted message to RECORD (envelope, the peer's address and port:
one connection sends from one port, the raw message and when it was accepted, in Unix
seconds); with ``-`` it records only a count.
Recipients beginning ``reject550`` are refused for good (550), ``defer451`` for now (451).
With USER:PASSWORD (``-`` for none), AUTH (PLAIN or LOGIN) is required and only that login
passes. With CERT and KEY (PEM files), STARTTLS is offered and required before MAIL; each
record says whether its session was encrypted.
SMTP_SINK_DELAY_SECONDS (environment) makes it take that long over each message before it
records and accepts it, as a busy relay would (the kill tests need batches that take a while).
Prints ``ready`` once it listens; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import sys
import time
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    def __init__(self, record: str) -> None:
        self.out = None if record == "-" else open(record, "a", encoding="utf-8")  # noqa: SIM115
        self.count = 0
        self.delay = float(os.environ.get("SMTP_SINK_DELAY_SECONDS", "0"))

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("reject550"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("defer451"):
            return "451 4.3.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.count += 1
        if self.out is not None:
            line = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "peer": list(session.peer),
                "login": _text(session.auth_data),
                "tls": session.ssl is not None,
                "data": base64.b64encode(envelope.content).decode(),
                "received_at": time.time(),  # when it was accepted (just before the 250)
            }
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()
        return f"250 2.0.0 queued as {self.count}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else ""


def authenticator(login: str) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (
            f"{data.login.decode()}:{data.password.decode()}" == login
        )
        return AuthResult(success=ok, auth_data=data.login if ok else None)

    return check


async def serve(port: int, record: str, login: str, cert: str, key: str) -> None:
    recorder = Recorder(record)
    loop = asyncio.get_running_loop()
    tls: dict[str, Any] = {}
    if cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        tls = {"tls_context": context, "require_starttls": True}

    def factory() -> SMTP:
        if login:
            return SMTP(
                recorder,
                auth_required=True,
                auth_require_tls=False,
                authenticator=authenticator(login),
                **tls,
            )
        return SMTP(recorder, **tls)

    server = await loop.create_server(factory, "127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    args = [*sys.argv[1:], "", "", ""]
    login = "" if args[2] == "-" else args[2]
    asyncio.run(serve(int(args[0]), args[1], login, args[3], args[4]))
