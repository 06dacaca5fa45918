"""The intake's HTTP endpoints (an aiohttp sub-application, mounted at ``/intake/`` on the
serve role's HTTP server). Every answer is JSON with a reason; every 4xx wrote nothing;
providers retry a 5xx.

- POST /bounces: provider-neutral JSON (domain/bounces.py), Standard Webhooks signed
- POST /bounces/dsn: an RFC 3464 DSN (``message/rfc822``, or ``multipart/report`` with its
  boundary in Content-Type), Standard Webhooks signed
- POST /complaints: an RFC 5965 abuse report (ARF), same forms and signature
- POST /sms/status: the SMS gateway's status callback (Twilio-style form: MessageSid,
  MessageStatus, ErrorCode), signed the Twilio way (X-Twilio-Signature) over ``sms_status_url``

200 {"reports": [{"message_id", "kind", "result", "suppressed"}]}; 400 MALFORMED_JSON /
MALFORMED_FORM / MISSING_FIELD; 401 INVALID_SIGNATURE (also while no secret is configured);
404 UNKNOWN_MESSAGE; 413 BODY_TOO_LARGE; 415 UNSUPPORTED_MEDIA_TYPE; 422 the report's refusal
(INVALID_REPORT, NOT_A_REPORT, UNSUPPORTED_REPORT, INVALID_STATUS, TOO_MANY_EVENTS,
WRONG_REPORT_TYPE, WRONG_CHANNEL, MESSAGE_NOT_SENT); 503 CONTACTS_UNAVAILABLE (the report is
recorded; the retry completes the suppression)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
import structlog
from aiohttp import web

from services.notifications.application.intake import Done, Intake
from services.notifications.domain import bounces, signatures
from shared.domain.errors import DomainError, NotFound
from shared.grpckit.errors import ServiceError
from shared.metrics import NOTIFICATIONS_INTAKE

log = structlog.get_logger(__name__)
MAX_BODY = 1024 * 1024
REPORT_TYPES = ("message/rfc822", "multipart/report")
Handler = Callable[[web.Request, bytes], Awaitable[list[Done]]]


def _now() -> datetime:
    return datetime.now(UTC)


def _answer(status: int, **body: Any) -> web.Response:
    if status >= 400:
        outcome = "unavailable" if status >= 500 else "refused"
        NOTIFICATIONS_INTAKE.labels(kind="request", outcome=outcome).inc()
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class Refused(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def _report_email(request: web.Request, body: bytes) -> bytes:
    """The raw report message: a message/rfc822 body as is, a multipart/report body under the
    request's Content-Type (its boundary)."""
    if request.content_type not in REPORT_TYPES:
        raise Refused(415, "UNSUPPORTED_MEDIA_TYPE", "send message/rfc822 or multipart/report")
    if request.content_type == "message/rfc822":
        return body
    header = request.headers.get("Content-Type", "")
    return f"Content-Type: {header}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body


def make_intake_app(
    intake: Intake,
    *,
    webhook_secret: str,
    sms_auth_token: str,
    sms_status_url: str,
    clock: Callable[[], datetime] = _now,
) -> web.Application:
    """The intake's endpoints. ``webhook_secret`` ("": every report refused) signs reports;
    ``sms_auth_token`` ("": every callback refused) and ``sms_status_url`` (the public URL the
    gateway posts to) sign SMS callbacks."""
    key = signatures.webhook_key(webhook_secret) if webhook_secret else b""

    def signed(request: web.Request, body: bytes) -> None:
        h = request.headers
        if not key:
            raise Refused(401, "INVALID_SIGNATURE", "intake is not configured (INTAKE_SECRET)")
        if not signatures.webhook_verified(
            key,
            h.get("webhook-id", ""),
            h.get("webhook-timestamp", ""),
            h.get("webhook-signature", ""),
            body,
            clock(),
        ):
            raise Refused(401, "INVALID_SIGNATURE", "missing, wrong or stale webhook-signature")

    async def json_reports(request: web.Request, body: bytes) -> list[Done]:
        signed(request, body)
        try:
            document = orjson.loads(body)
        except ValueError:
            raise Refused(400, "MALFORMED_JSON", "the body is not JSON") from None
        return await intake.reports(bounces.parse_json_report(document), "json")

    def email_reports(source: str, kinds: tuple[str, ...]) -> Handler:
        async def handle(request: web.Request, body: bytes) -> list[Done]:
            signed(request, body)
            reports = bounces.parse_report_email(_report_email(request, body))
            if any(r.kind not in kinds for r in reports):
                raise Refused(422, "WRONG_REPORT_TYPE", f"this endpoint takes {source} reports")
            return await intake.reports(reports, source)

        return handle

    async def sms_status(request: web.Request, body: bytes) -> list[Done]:
        try:
            params = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "MALFORMED_FORM", "the body is not a form") from None
        query = request.rel_url.raw_query_string  # as the gateway signed it, not decoded
        url = sms_status_url + (f"?{query}" if query else "")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signatures.twilio_verified(sms_auth_token, url, params, signature):
            raise Refused(401, "INVALID_SIGNATURE", "missing or wrong X-Twilio-Signature")
        form = dict(params)
        sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "").lower()
        if not sid or not status or len(sid) > 200:
            raise Refused(400, "MISSING_FIELD", "MessageSid and MessageStatus are required")
        error_code = form.get("ErrorCode", "")
        if not error_code.isalnum() or len(error_code) > 20:  # kept in the event: a code only
            error_code = ""
        return [await intake.sms_status(sid, status, error_code)]

    def endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _answer(413, error="BODY_TOO_LARGE", message=f"at most {MAX_BODY} bytes")
            try:
                done = await handler(request, body)
            except Refused as r:
                return _answer(r.status, error=r.error, message=r.message)
            except bounces.ReportError as e:
                status = 404 if e.reason == "UNKNOWN_MESSAGE" else 422
                return _answer(status, error=e.reason, message=str(e))
            except NotFound as e:
                return _answer(404, error=e.reason, message=e.message)
            except DomainError as e:
                return _answer(422, error=e.reason, message=e.message)
            except ServiceError as e:  # contacts away: the provider retries, the retry completes
                log.warning("intake.unavailable", reason=e.reason, path=request.path)
                return _answer(503, error=e.reason, message="retry later")
            except Exception:  # the database away, a bug: logged; the provider retries
                log.exception("intake.failed", path=request.path)
                return _answer(500, error="INTERNAL", message="retry later")
            return _answer(200, reports=[d.to_json() for d in done])

        return handle

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/bounces", endpoint(json_reports))
    app.router.add_post(
        "/bounces/dsn", endpoint(email_reports("dsn", ("hard_bounce", "soft_bounce")))
    )
    app.router.add_post("/complaints", endpoint(email_reports("arf", ("complaint",))))
    app.router.add_post("/sms/status", endpoint(sms_status))
    return app
