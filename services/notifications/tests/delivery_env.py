"""The delivery workers' peers and the workers themselves, all real: an SMTP server (aiosmtpd,
its own process: smtp_sink.py), an SMS gateway and a webhook receiver (aiohttp, on the test's
event loop), and `python -m services.notifications.delivery` as a subprocess called through
GrpcDelivery with the test service token."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.testing import processes, tokens
from shared.testing.service_env import free_port

ROOT = Path(__file__).resolve().parents[3]
SECRET = "whsec_" + base64.b64encode(b"delivery-test-webhook-secret-32b").decode()
SMS_SID, SMS_TOKEN = "ACtest", "sms-test-token"
ENV = {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"}


class SmtpSink:
    """smtp_sink.py as a process; ``messages()`` reads what it accepted."""

    def __init__(
        self,
        tmp: Path,
        login: str = "",
        tls: tuple[Path, Path] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.record = tmp / f"smtp-{self.port}.jsonl"
        self.record.touch()
        args = [sys.executable, "-m", "services.notifications.tests.smtp_sink"]
        extra = [login or "-", *(str(p) for p in tls)] if tls else ([login] if login else [])
        self.p = subprocess.Popen(
            [*args, str(self.port), str(self.record), *extra],
            env={**os.environ, **ENV, **(env or {})},
            stdout=subprocess.PIPE,
        )
        assert self.p.stdout is not None
        assert self.p.stdout.readline().strip() == b"ready", "the SMTP sink did not start"

    def received(self) -> list[dict[str, Any]]:
        lines = self.record.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(base64.b64decode(r["data"]), policy=email.policy.default)
            for r in self.received()
        ]

    def stop(self) -> None:
        processes.stop(self.p, 10)


@dataclass
class HttpPeers:
    """The SMS gateway (``/sms/Messages.json``: basic auth, answers by the `To` number's last
    three digits when they are a status, else 201 with a sid) and the webhook receiver
    (``/hooks/{status}``: verifies the signature with the standardwebhooks library, 401 when it
    does not verify, else answers ``status``)."""

    port: int = 0
    sms: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/sms/Messages.json", self.on_sms)
        app.router.add_post("/hooks/{status}", self.on_hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def on_sms(self, request: web.Request) -> web.Response:
        form = await request.post()
        expected = "Basic " + base64.b64encode(f"{SMS_SID}:{SMS_TOKEN}".encode()).decode()
        self.sms.append(
            {
                "form": {k: str(v) for k, v in form.items()},
                "authorized": request.headers.get("Authorization") == expected,
                "headers": dict(request.headers),
            }
        )
        if request.headers.get("Authorization") != expected:
            return web.json_response({"message": "bad credentials"}, status=401)
        status = str(form.get("To", ""))[-3:]
        if status in ("429", "500", "400", "408", "503"):
            return web.json_response({"message": "no"}, status=int(status))
        key = request.headers.get("Idempotency-Key", "")
        return web.json_response({"sid": f"SM{key[:8]}", "status": "queued"}, status=201)

    async def on_hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            Webhook(SECRET).verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        self.hooks.append({"body": body, "verified": verified, "headers": dict(request.headers)})
        if not verified:
            return web.Response(status=401)
        return web.Response(status=int(request.match_info["status"]))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Worker:
    """The delivery role as a process, on free ports, with the test token table, started as
    `make run` and the deploy files start it: ``python -m services.notifications delivery``,
    which execs the worker's own program (a ProcessRole)."""

    def __init__(self, *, capture: bool = False, **extra: str) -> None:
        """``capture``: keep its stderr (read it once it exited)."""
        self.grpc_port, self.metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            **ENV,
            "GRPC_PORT": str(self.grpc_port),
            "METRICS_PORT": str(self.metrics_port),
            "CRM_TOKENS": tokens.TABLE,
            "LOG_LEVEL": "WARNING",
            "SMTP_TIMEOUT_SECONDS": "10",
            "HTTP_TIMEOUT_SECONDS": "10",
            "MESSAGE_ID_DOMAIN": "mail.shop.example",
            **extra,
        }
        self.p = subprocess.Popen(
            [sys.executable, "-m", "services.notifications", "delivery"],
            env=env,
            stderr=subprocess.PIPE if capture else None,
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    async def http(self, path: str) -> tuple[int, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.metrics_port)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            assert self.p.poll() is None, "the delivery worker exited"
            try:
                if (await self.http("/healthz"))[0] == 200:
                    return
            except OSError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "the worker did not start"
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        processes.stop(self.p, 30)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files): the relay's, and
    the CA bundle the worker is told to trust."""
    from datetime import UTC, datetime, timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crm test relay")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "relay.pem", tmp / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
