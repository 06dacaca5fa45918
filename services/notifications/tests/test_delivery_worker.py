"""The delivery role as a real process (nameko over eventlet), called through GrpcDelivery with
the test service token, sending to a real SMTP server (aiosmtpd, its own process), a real SMS
gateway and a real webhook receiver (aiohttp) that verifies signatures with the
standardwebhooks library."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crm.notifications.v1 import delivery_pb2 as pb
from crm.notifications.v1 import delivery_pb2_grpc as pb_grpc
from crm.notifications.v1 import events_pb2 as epb
from services.notifications.adapters.delivery_client import DeliveryUnavailable, GrpcDelivery
from services.notifications.application.delivery import Outbound
from services.notifications.domain import variant
from services.notifications.tests.delivery_env import (
    SECRET,
    SMS_SID,
    SMS_TOKEN,
    HttpPeers,
    SmtpSink,
    Worker,
    self_signed,
)
from shared.grpckit.client import ClientTls
from shared.testing import rpc, tokens
from shared.testing.service_env import free_port

pytestmark = pytest.mark.slow
SHOP = "Shop <news@shop.example>"


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSink]:
    s = SmtpSink(tmp_path_factory.mktemp("smtp"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
async def peers() -> AsyncIterator[HttpPeers]:
    p = HttpPeers()
    await p.start()
    yield p
    await p.stop()


@pytest.fixture(scope="module")
async def worker(sink: SmtpSink, peers: HttpPeers) -> AsyncIterator[Worker]:
    w = Worker(
        SMTP_PORT=str(sink.port),
        SMTP_POOL_SIZE="2",
        SMS_BASE_URL=f"{peers.base}/sms",
        SMS_ACCOUNT_SID=SMS_SID,
        SMS_AUTH_TOKEN=SMS_TOKEN,
        WEBHOOK_SECRET=SECRET,
        DELIVERY_CONCURRENCY="8",
    )
    try:
        await w.wait_ready()
        yield w
    finally:
        w.stop()


@pytest.fixture
async def delivery(worker: Worker) -> AsyncIterator[GrpcDelivery]:
    client = GrpcDelivery(worker.target, tokens.SERVICE_TOKEN, timeout=60)
    yield client
    await client.close()


def mail(to: str, **fields: Any) -> Outbound:
    base: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "channel": variant.EMAIL,
        "to": to,
        "sender": SHOP,
        "subject": "Your cart",
        "text": "Hello Ada, 2 items wait for you.",
    }
    return Outbound(**(base | fields))


def by_id(sink: SmtpSink, message_id: str) -> tuple[dict[str, Any], EmailMessage]:
    for record, msg in zip(sink.received(), sink.messages(), strict=True):
        if msg["Message-ID"] == f"<{message_id}@mail.shop.example>":
            return record, msg
    raise AssertionError(f"{message_id} not received")


async def test_an_email_has_its_parts_and_headers(sink: SmtpSink, delivery: GrpcDelivery) -> None:
    html = mail(
        "ada@example.com",
        html="<p>Hello <b>Ada</b></p>",
        headers=(
            ("List-Unsubscribe", "<https://shop.example/u/1>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Message-ID", "<forged@elsewhere>"),
        ),
        test=True,
    )
    plain = mail("bob@example.com", subject="Été ☀", text="Bonjour Bob")
    out = await delivery.deliver([html, plain])
    assert [(o.message_id, o.status) for o in out] == [
        (html.message_id, "sent"),
        (plain.message_id, "sent"),
    ]
    assert out[0].detail.startswith("250 2.0.0 queued as")
    record, msg = by_id(sink, html.message_id)
    assert record["mail_from"] == "news@shop.example"
    assert record["rcpt_tos"] == ["ada@example.com"]
    assert msg.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content().strip()) for p in msg.iter_parts()]
    assert parts == [
        ("text/plain", "Hello Ada, 2 items wait for you."),
        ("text/html", "<p>Hello <b>Ada</b></p>"),
    ]
    assert msg.get_all("Message-ID") == [f"<{html.message_id}@mail.shop.example>"]
    assert msg["From"] == SHOP and msg["To"] == "ada@example.com"
    assert msg["Subject"] == "Your cart" and msg["Date"]
    assert msg["List-Unsubscribe"] == "<https://shop.example/u/1>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-CRM-Test"] == "1"
    _, text_only = by_id(sink, plain.message_id)
    assert text_only.get_content_type() == "text/plain"
    assert text_only.get_content().strip() == "Bonjour Bob"
    assert text_only["Subject"] == "Été ☀"
    assert text_only["X-CRM-Test"] is None


async def test_messages_reuse_the_pooled_connections(
    sink: SmtpSink, delivery: GrpcDelivery
) -> None:
    batch = [mail(f"reader{n}@example.com") for n in range(12)]
    before = len(sink.received())
    out = await delivery.deliver(batch)
    assert {o.status for o in out} == {"sent"}
    peers = {tuple(r["peer"]) for r in sink.received()[before:]}
    # SMTP_POOL_SIZE=2: twelve messages over at most two connections
    assert 1 <= len(peers) <= 2
    again = await delivery.deliver([mail("later@example.com")])
    assert again[0].status == "sent"
    assert tuple(sink.received()[-1]["peer"]) in peers


async def test_smtp_replies_map_to_statuses(sink: SmtpSink, delivery: GrpcDelivery) -> None:
    ok, busy, gone = (
        mail("fine@example.com"),
        mail("defer451@example.com"),
        mail("reject550@example.com"),
    )
    bad = mail("not an address")
    out = await delivery.deliver([ok, busy, gone, bad])
    assert [o.message_id for o in out] == [m.message_id for m in (ok, busy, gone, bad)]
    assert [o.status for o in out] == ["sent", "retry", "rejected", "rejected"]
    assert out[1].detail.startswith("451 4.3.0")
    assert out[2].detail.startswith("550 5.1.1")
    assert "not an email address" in out[3].detail
    received = {r["rcpt_tos"][0] for r in sink.received()}
    assert "fine@example.com" in received
    assert not {"defer451@example.com", "reject550@example.com"} & received


async def test_a_header_that_would_inject_another_is_rejected(delivery: GrpcDelivery) -> None:
    out = await delivery.deliver([mail("eve@example.com", headers=(("X-Tag", "a\r\nBcc: x@y"),))])
    assert out[0].status == "rejected"
    assert "header" in out[0].detail


async def test_an_sms_is_a_basic_auth_form_post_with_an_idempotency_key(
    peers: HttpPeers, delivery: GrpcDelivery
) -> None:
    sms = Outbound(
        str(uuid.uuid4()), variant.SMS, "+15551234567", sender="+15550000000", body="Hi ✓"
    )
    out = await delivery.deliver([sms])
    assert out[0].status == "sent"
    assert out[0].provider_id == f"SM{sms.message_id[:8]}"
    got = peers.sms[-1]
    assert got["authorized"]
    assert got["form"] == {"To": "+15551234567", "From": "+15550000000", "Body": "Hi ✓"}
    assert got["headers"]["Idempotency-Key"] == sms.message_id


async def test_gateway_answers_map_to_statuses(delivery: GrpcDelivery) -> None:
    numbers = ["+15550000201", "+15550000429", "+15550000500", "+15550000400", "+15550000408"]
    out = await delivery.deliver(
        [Outbound(str(uuid.uuid4()), variant.SMS, n, sender="+1555", body="x") for n in numbers]
    )
    assert [o.status for o in out] == ["sent", "retry", "retry", "rejected", "retry"]
    assert [o.detail for o in out] == ["HTTP 201", "HTTP 429", "HTTP 500", "HTTP 400", "HTTP 408"]
    assert [bool(o.provider_id) for o in out] == [True, False, False, False, False]


async def test_a_webhook_is_signed_as_standard_webhooks(
    peers: HttpPeers, delivery: GrpcDelivery
) -> None:
    hook = Outbound(
        str(uuid.uuid4()),
        variant.WEBHOOK,
        f"{peers.base}/hooks/204",
        body='{"event": "cart.abandoned", "total": 2500}',
        headers=(("X-Shop", "dev-shop"), ("webhook-signature", "v1,forged")),
    )
    out = await delivery.deliver([hook])
    assert (out[0].status, out[0].detail) == ("sent", "HTTP 204")
    got = peers.hooks[-1]
    assert got["verified"]  # standardwebhooks' own verification of id.timestamp.body
    assert got["body"] == hook.body.encode()
    assert got["headers"]["webhook-id"] == hook.message_id
    assert got["headers"]["Idempotency-Key"] == hook.message_id
    assert got["headers"]["Content-Type"] == "application/json"
    assert got["headers"]["X-Shop"] == "dev-shop"


async def test_receiver_answers_and_unreachable_peers_map_to_statuses(
    peers: HttpPeers, delivery: GrpcDelivery
) -> None:
    closed = free_port()  # nothing listens there
    urls = [
        f"{peers.base}/hooks/200",
        f"{peers.base}/hooks/429",
        f"{peers.base}/hooks/503",
        f"{peers.base}/hooks/400",
        f"http://127.0.0.1:{closed}/hooks",
        "ftp://example.com/x",
    ]
    out = await delivery.deliver(
        [Outbound(str(uuid.uuid4()), variant.WEBHOOK, u, body="{}") for u in urls]
    )
    assert [o.status for o in out] == ["sent", "retry", "retry", "rejected", "retry", "rejected"]
    assert "ConnectionRefused" in out[4].detail


async def test_peers_away_or_channels_unconfigured_mean_retry() -> None:
    """No SMTP server listening; no SMS gateway nor webhook secret configured: the operator's
    to fix, so every message is to be tried again later."""
    w = Worker(SMTP_PORT=str(free_port()))
    try:
        await w.wait_ready()
        client = GrpcDelivery(w.target, tokens.SERVICE_TOKEN, timeout=60)
        try:
            out = await client.deliver(
                [
                    mail("ada@example.com"),
                    Outbound(str(uuid.uuid4()), variant.SMS, "+15551234567", body="x"),
                    Outbound(str(uuid.uuid4()), variant.WEBHOOK, "http://127.0.0.1:9/h", body="{}"),
                ]
            )
        finally:
            await client.close()
        assert [o.status for o in out] == ["retry", "retry", "retry"]
        assert "ConnectionRefused" in out[0].detail
        assert "SMS_BASE_URL" in out[1].detail and "WEBHOOK_SECRET" in out[2].detail
    finally:
        w.stop()


async def test_smtp_auth_is_used_when_configured(tmp_path: Path) -> None:
    """Credentials the relay refuses are the operator's to fix, not the message's: RETRY."""
    sink = SmtpSink(tmp_path, login="relay-user:relay-pass")
    good = Worker(SMTP_PORT=str(sink.port), SMTP_USERNAME="relay-user", SMTP_PASSWORD="relay-pass")
    wrong = Worker(
        SMTP_PORT=str(sink.port),
        SMTP_USERNAME="relay-user",
        SMTP_PASSWORD="nope",
        SMTP_TIMEOUT_SECONDS="2",  # aiosmtpd delays its answer to a failed login
    )
    try:
        await good.wait_ready()
        await wrong.wait_ready()
        for w, status in ((good, "sent"), (wrong, "retry")):
            client = GrpcDelivery(w.target, tokens.SERVICE_TOKEN, timeout=60)
            try:
                out = await client.deliver([mail("ada@example.com")])
            finally:
                await client.close()
            assert out[0].status == status, out[0].detail
        assert [r["login"] for r in sink.received()] == ["relay-user"]
    finally:
        good.stop()
        wrong.stop()
        sink.stop()


async def test_starttls_then_auth_when_configured(tmp_path: Path) -> None:
    """A relay that requires STARTTLS (and AUTH after it): the worker upgrades the connection,
    checking the relay's certificate against SMTP_TLS_CA_FILE; without that CA it cannot
    verify the relay and sends nothing (RETRY)."""
    cert, key = self_signed(tmp_path)
    sink = SmtpSink(tmp_path, login="relay-user:relay-pass", tls=(cert, key))
    relay: dict[str, Any] = {
        "SMTP_PORT": str(sink.port),
        "SMTP_STARTTLS": "true",
        "SMTP_USERNAME": "relay-user",
        "SMTP_PASSWORD": "relay-pass",
    }
    trusting = Worker(**relay, SMTP_TLS_CA_FILE=str(cert))
    unverified = Worker(**relay)
    try:
        await trusting.wait_ready()
        await unverified.wait_ready()
        for w, status in ((trusting, "sent"), (unverified, "retry")):
            client = GrpcDelivery(w.target, tokens.SERVICE_TOKEN, timeout=60)
            try:
                out = await client.deliver([mail("ada@example.com")])
            finally:
                await client.close()
            assert out[0].status == status, out[0].detail
        assert "CERTIFICATE_VERIFY_FAILED" in out[0].detail
        assert [(r["tls"], r["login"]) for r in sink.received()] == [(True, "relay-user")]
    finally:
        trusting.stop()
        unverified.stop()
        sink.stop()


async def test_tls_on_the_grpc_port_when_configured(tmp_path: Path, sink: SmtpSink) -> None:
    """With GRPC_TLS_CERT_FILE/KEY_FILE the workers serve TLS: GrpcDelivery with the suite's
    ClientTls (the CA) is answered, a plaintext caller is not."""
    cert, key = self_signed(tmp_path)
    w = Worker(SMTP_PORT=str(sink.port), GRPC_TLS_CERT_FILE=str(cert), GRPC_TLS_KEY_FILE=str(key))
    try:
        await w.wait_ready()
        secure = GrpcDelivery(w.target, tokens.SERVICE_TOKEN, ClientTls(cert.read_bytes()))
        plain = GrpcDelivery(w.target, tokens.SERVICE_TOKEN, timeout=10)
        try:
            out = await secure.deliver([mail("tls@example.com")])
            assert out[0].status == "sent"
            with pytest.raises(DeliveryUnavailable):
                await plain.deliver([mail("plain@example.com")])
        finally:
            await secure.close()
            await plain.close()
    finally:
        w.stop()
    assert "plain@example.com" not in {r["rcpt_tos"][0] for r in sink.received()}


@pytest.mark.parametrize(
    ("token", "code", "reason"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING"),
        ("not-a-token", grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
        (tokens.TOKENS["operator"], grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED"),
    ],
)
async def test_callers_without_a_service_token_are_refused(
    worker: Worker, sink: SmtpSink, token: str | None, code: grpc.StatusCode, reason: str
) -> None:
    before = len(sink.received())
    request = pb.DeliverRequest(
        messages=[
            pb.OutboundMessage(
                message_id="m1", channel=epb.CHANNEL_EMAIL, to="a@example.com", sender="s@x.example"
            )
        ]
    )
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.insecure_channel(worker.target) as ch:
        call = pb_grpc.DeliveryServiceStub(ch).Deliver(request, metadata=metadata, timeout=30)
        await rpc.expect_error(call, code, reason, "notifications.crm")
    assert len(sink.received()) == before


@pytest.mark.parametrize("count", [0, 501])
async def test_a_batch_has_1_to_500_messages(worker: Worker, count: int) -> None:
    request = pb.DeliverRequest(
        messages=[
            pb.OutboundMessage(message_id=f"m{i}", channel=epb.CHANNEL_EMAIL, to="a@x.example")
            for i in range(count)
        ]
    )
    async with grpc.aio.insecure_channel(worker.target) as ch:
        call = pb_grpc.DeliveryServiceStub(ch).Deliver(
            request, metadata=(("authorization", f"Bearer {tokens.SERVICE_TOKEN}"),), timeout=30
        )
        await rpc.expect_error(
            call, grpc.StatusCode.INVALID_ARGUMENT, "BATCH_SIZE", "notifications.crm"
        )


async def test_a_refused_caller_is_in_doubt_for_the_client(worker: Worker) -> None:
    client = GrpcDelivery(worker.target, "not-a-token", timeout=30)
    try:
        with pytest.raises(DeliveryUnavailable) as raised:
            await client.deliver([mail("ada@example.com")])
    finally:
        await client.close()
    assert (raised.value.code, raised.value.reason) == ("UNAUTHENTICATED", "TOKEN_INVALID")


async def test_health_and_metrics_answer(worker: Worker, delivery: GrpcDelivery) -> None:
    await delivery.deliver([mail("metrics@example.com")])
    async with grpc.aio.insecure_channel(worker.target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", "liveness", "crm.notifications.v1.DeliveryService"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=30)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, name
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=30)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert await worker.http("/healthz") == (200, "ok\n")
    status, text = await worker.http("/metrics")
    assert status == 200
    sent = [
        line
        for line in text.splitlines()
        if line.startswith('crm_delivery_messages_total{channel="email",status="sent"}')
    ]
    assert sent and float(sent[0].split()[-1]) >= 1
    assert "crm_delivery_send_seconds_bucket" in text
    assert "crm_delivery_smtp_connections " in text
    assert "process_resident_memory_bytes" in text


async def test_sigterm_stops_the_worker_within_seconds(sink: SmtpSink) -> None:
    w = Worker(SMTP_PORT=str(sink.port))
    try:
        await w.wait_ready()
        w.p.send_signal(signal.SIGTERM)
        # generous: nameko acts on it within about a second (its 1 s timer); idle it took ~60 s
        assert w.p.wait(15) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("the delivery worker did not stop within 15 s of SIGTERM")
    finally:
        w.stop()


async def test_ctrl_c_under_make_run_stops_it_once(sink: SmtpSink) -> None:
    """Ctrl-C in `make run` reaches the worker as SIGINT, then make run sends SIGTERM: the
    worker stops once and cleanly."""
    w = Worker(capture=True, SMTP_PORT=str(sink.port), LOG_LEVEL="INFO")
    try:
        await w.wait_ready()
        w.p.send_signal(signal.SIGINT)
        w.p.send_signal(signal.SIGTERM)
        assert w.p.wait(15) == 0
        assert w.p.stderr is not None
        err = w.p.stderr.read().decode()
        assert err.count("delivery.stopping") == 1 and "delivery.stopped" in err
        assert "Traceback" not in err
    finally:
        w.stop()
