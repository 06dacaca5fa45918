"""The delivery workers' pure parts: reply codes to statuses, the email as built, the SMS
request, Standard Webhooks signing (checked with the standardwebhooks library), and the
service description nameko-grpc is given instead of the grpc-importing generated module."""

from __future__ import annotations

import base64
import email
import email.policy
import subprocess
import sys
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
from google.rpc import error_details_pb2
from standardwebhooks import Webhook

from crm.notifications.v1 import delivery_pb2
from services.notifications.delivery import email_message, grpc_shim, http_channels, wire
from services.notifications.delivery.outcome import MAX_DETAIL, http_result, smtp_result
from services.notifications.tests.delivery_env import ENV, ROOT

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (250, "sent"),
        (251, "sent"),
        (421, "retry"),
        (451, "retry"),
        (452, "retry"),
        (550, "rejected"),
        (552, "rejected"),
        (554, "rejected"),
        (-1, "retry"),
    ],
)
def test_smtp_codes(code: int, status: str) -> None:
    result = smtp_result(code, b"2.0.0 some\n text")
    assert result.status == status
    assert result.detail == f"{code} 2.0.0 some text"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (200, "sent"),
        (201, "sent"),
        (204, "sent"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (400, "rejected"),
        (401, "rejected"),
        (404, "rejected"),
        (410, "rejected"),
        (301, "rejected"),
    ],
)
def test_http_codes(code: int, status: str) -> None:
    result = http_result(code, provider_id="SM1")
    assert (result.status, result.detail) == (status, f"HTTP {code}")
    assert result.provider_id == ("SM1" if status == "sent" else "")


def test_details_are_bounded() -> None:
    assert len(smtp_result(550, "x" * 5000).detail) == MAX_DETAIL


def build(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "message_id_value": "0c6f-id",
        "domain": "mail.shop.example",
        "sender": "Shop <news@shop.example>",
        "to": "ada@example.com",
        "subject": "Hello",
        "text": "text body",
        "html": "",
        "headers": (),
        "test": False,
        "now": NOW,
    }
    return email_message.build(**(fields | overrides))  # type: ignore[arg-type]


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_a_text_email() -> None:
    data = build()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    msg = parsed(data)
    assert msg["Message-ID"] == "<0c6f-id@mail.shop.example>"
    assert msg["Date"] == "Sun, 01 Mar 2026 12:30:00 +0000"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "text body"
    assert msg["X-CRM-Test"] is None


def test_an_html_email_is_multipart_alternative_text_first() -> None:
    msg = parsed(build(html="<p>hi</p>", test=True))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["X-CRM-Test"] == "1"


def test_extra_headers_are_kept_but_not_those_the_worker_owns() -> None:
    msg = parsed(
        build(
            headers=(
                ("List-Unsubscribe", "<mailto:u@shop.example>"),
                ("Message-ID", "<forged@x>"),
                ("Bcc", "spy@example.com"),
                ("Content-Type", "text/html"),
            )
        )
    )
    assert msg["List-Unsubscribe"] == "<mailto:u@shop.example>"
    assert msg.get_all("Message-ID") == ["<0c6f-id@mail.shop.example>"]
    assert msg["Bcc"] is None and msg.get_content_type() == "text/plain"


@pytest.mark.parametrize(
    "overrides",
    [
        {"to": "nobody"},
        {"sender": ""},
        {"to": "a@b.example\r\nBcc: c@d.example"},
        {"headers": (("X-Tag", "a\nBcc: x@y"),)},
        {"subject": "a\r\nBcc: x@y"},
    ],
)
def test_what_cannot_be_sent_is_a_bad_message(overrides: dict[str, object]) -> None:
    with pytest.raises(email_message.BadMessage):
        build(**overrides)


def test_envelope_addresses() -> None:
    assert email_message.envelope_address("Shop <news@shop.example>") == "news@shop.example"
    assert email_message.envelope_address("ada@example.com") == "ada@example.com"


def test_webhook_signatures_verify_with_the_standardwebhooks_library() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = '{"a": "é"}'.encode()
    ts = int(datetime.now(UTC).timestamp())
    headers = http_channels.webhook_headers(
        http_channels.secret_key(secret), "msg_1", ts, body, [("X-Extra", "1"), ("webhook-id", "x")]
    )
    assert headers["webhook-id"] == headers["Idempotency-Key"] == "msg_1"
    assert headers["X-Extra"] == "1"
    Webhook(secret).verify(body, headers)  # raises when the signature is wrong
    expected = Webhook(secret).sign("msg_1", datetime.fromtimestamp(ts, UTC), body.decode())
    assert headers["webhook-signature"] == expected
    tampered = {**headers, "webhook-signature": http_channels.sign(b"other", "msg_1", ts, body)}
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(body, tampered)


def test_the_sms_request() -> None:
    url, body, headers = http_channels.sms_request(
        "https://sms.example/2010-04-01/Accounts/AC1/",
        "AC1",
        "tok",
        "m-1",
        "+1555",
        "+1666",
        "Hi & ✓",
    )
    assert url == "https://sms.example/2010-04-01/Accounts/AC1/Messages.json"
    assert parse_qs(body.decode()) == {"To": ["+1555"], "From": ["+1666"], "Body": ["Hi & ✓"]}
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"AC1:tok").decode()
    assert headers["Idempotency-Key"] == "m-1"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("answer", "sid"),
    [
        (b'{"sid": "SM123"}', "SM123"),
        (b"{}", ""),
        (b"not json", ""),
        (b"[1]", ""),
        (b'{"sid": 5}', ""),
    ],
)
def test_the_gateway_sid(answer: bytes, sid: str) -> None:
    assert http_channels.gateway_sid(answer) == sid


def test_the_service_description_matches_the_generated_stub() -> None:
    stub = wire.stub_of(delivery_pb2, "DeliveryService")
    assert stub.__name__ == "DeliveryServiceStub"
    assert stub.__module__ == "crm.notifications.v1.delivery_pb2_grpc"

    class Channel:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def __getattr__(self, kind: str) -> object:
            return lambda path, **_: self.calls.append((kind, path))

    channel = Channel()
    stub(channel)
    assert channel.calls == [("unary_unary", "/crm.notifications.v1.DeliveryService/Deliver")]


def test_refusals_carry_one_error_info_in_the_notifications_domain() -> None:
    status = wire.status(wire.PERMISSION_DENIED, "ROLE_NOT_ALLOWED", "no", role="operator")
    assert status.code == 7 and len(status.details) == 1
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "ROLE_NOT_ALLOWED",
        "notifications.crm",
        {"role": "operator"},
    )


def test_the_status_codes_nameko_grpc_gets_are_grpcs() -> None:
    import grpc

    assert [(c.name, c.value) for c in grpc_shim.StatusCode] == [
        (c.name, c.value) for c in grpc.StatusCode
    ]


def test_the_worker_process_never_loads_grpcio() -> None:
    """What the worker's process has loaded once its service is defined, as __main__ does it:
    no grpcio (nameko-grpc got grpc_shim's StatusCode), no asyncpg, none of the asyncio roles'
    code."""
    probe = (
        "import eventlet; eventlet.monkey_patch()\n"
        "from services.notifications.delivery import grpc_shim; grpc_shim.install()\n"
        "import sys, services.notifications.delivery.main\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-W", "ignore", "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=ENV,
        ).stdout.split()
    )
    assert {"services.notifications.delivery.service", "nameko_grpc.entrypoint"} <= loaded
    forbidden = {
        "grpc._cython",
        "grpc._cython.cygrpc",
        "grpc.aio",
        "asyncpg",
        "aiohttp",
        "uvloop",
        "shared.grpckit",
        "shared.db",
        "services.notifications.app",
        "services.notifications.api",
    }
    assert not forbidden & loaded
