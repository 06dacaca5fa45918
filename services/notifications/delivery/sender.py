"""Sends one message on its channel and tells the outcome; a batch goes out on a green pool,
its outcomes in request order."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import eventlet

from crm.notifications.v1 import delivery_pb2 as pb
from crm.notifications.v1 import events_pb2 as epb
from services.notifications.delivery import email_message, http_channels
from services.notifications.delivery.metrics import MESSAGES, SEND_SECONDS, SMTP_CONNECTIONS
from services.notifications.delivery.outcome import Result, not_configured, refused
from services.notifications.delivery.settings import DeliverySettings
from services.notifications.delivery.smtp import SmtpConfig, SmtpPool

CHANNELS = {epb.CHANNEL_EMAIL: "email", epb.CHANNEL_SMS: "sms", epb.CHANNEL_WEBHOOK: "webhook"}
STATUSES = {
    "sent": pb.DELIVERY_STATUS_SENT,
    "retry": pb.DELIVERY_STATUS_RETRY,
    "rejected": pb.DELIVERY_STATUS_REJECTED,
}


class Sender:
    def __init__(self, settings: DeliverySettings, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        self.smtp = SmtpPool(
            SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                timeout=settings.smtp_timeout_seconds,
                starttls=settings.smtp_starttls,
                ca_file=settings.smtp_tls_ca_file,
                username=settings.smtp_username,
                password=settings.smtp_password,
                pool_size=settings.smtp_pool_size,
            ),
            on_size=SMTP_CONNECTIONS.set,
        )
        self.webhook_key = (
            http_channels.secret_key(settings.webhook_secret) if settings.webhook_secret else b""
        )
        self.pool = eventlet.GreenPool(settings.delivery_concurrency)

    def deliver(self, messages: Sequence[pb.OutboundMessage]) -> list[pb.DeliveryOutcome]:
        """Every message sent at once (up to the pool's size), one outcome each, in order."""
        return list(self.pool.imap(self.outcome, messages))

    def outcome(self, message: pb.OutboundMessage) -> pb.DeliveryOutcome:
        channel = CHANNELS.get(message.channel, "unknown")
        started = time.perf_counter()
        result = self.send(channel, message)
        SEND_SECONDS.labels(channel).observe(time.perf_counter() - started)
        MESSAGES.labels(channel, result.status).inc()
        return pb.DeliveryOutcome(
            message_id=message.message_id,
            status=STATUSES[result.status],
            detail=result.detail,
            provider_id=result.provider_id,
        )

    def send(self, channel: str, message: pb.OutboundMessage) -> Result:
        if channel == "email":
            return self.email(message)
        if channel == "sms":
            return self.sms(message)
        if channel == "webhook":
            return self.webhook(message)
        return refused(f"unknown channel {message.channel}")

    def email(self, m: pb.OutboundMessage) -> Result:
        try:
            data = email_message.build(
                message_id_value=m.message_id,
                domain=self.settings.message_id_domain,
                sender=m.sender,
                to=m.to,
                subject=m.subject,
                text=m.text,
                html=m.html,
                headers=[(h.name, h.value) for h in m.headers],
                test=m.test,
                now=datetime.fromtimestamp(int(self.clock()), UTC),  # the Date header's unit
            )
            sender = email_message.envelope_address(m.sender)
            to = email_message.envelope_address(m.to)
        except email_message.BadMessage as exc:
            return refused(str(exc))
        return self.smtp.send(sender, to, data)

    def sms(self, m: pb.OutboundMessage) -> Result:
        s = self.settings
        if not s.sms_base_url:
            return not_configured("SMS_BASE_URL is not set: this worker sends no SMS yet")
        url, body, headers = http_channels.sms_request(
            s.sms_base_url,
            s.sms_account_sid,
            s.sms_auth_token,
            m.message_id,
            m.to,
            m.sender,
            m.body,
        )
        return http_channels.send_http(url, body, headers, s.http_timeout_seconds, sid=True)

    def webhook(self, m: pb.OutboundMessage) -> Result:
        if not self.webhook_key:
            return not_configured("WEBHOOK_SECRET is not set: this worker signs no webhooks yet")
        body = m.body.encode()
        headers = http_channels.webhook_headers(
            self.webhook_key,
            m.message_id,
            int(self.clock()),
            body,
            [(h.name, h.value) for h in m.headers],
        )
        return http_channels.send_http(
            m.to, body, headers, self.settings.http_timeout_seconds, sid=False
        )

    def close(self) -> None:
        self.smtp.close()
