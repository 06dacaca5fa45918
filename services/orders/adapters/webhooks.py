"""The webhook endpoint: POST /webhooks/<platform>. Verifies the signature on the raw body and
the sender's shop, maps the payload with the platform's module, runs the commands, and answers
in the way shop platforms understand (they retry anything but 2xx). Every answer is JSON with a
reason; every 4xx wrote nothing.

- 200 {"result": "applied"}: applied, or a redelivery (nothing changed)
- 200 {"result": "already_applied"}: the effect was already there (orders/paid after orders/create
  said paid, a cancellation of a cancelled order)
- 202 {"result": "deferred", "reasons": [...]}: out of order for the order's state (a refund
  before the payment): kept in the order's inbox and applied as soon as the order allows it
- 400: not JSON, unknown or missing topic; 401: missing or wrong signature; 403: a shop domain
  this deployment does not serve; 404: unknown platform; 413: body too large
- 422: the payload is malformed, invalid or does not agree with its topic - retrying will not help
- 409: refers to an order not placed yet (out-of-order delivery): the platform retries later
- 503: the contacts service could not resolve the customer: retry later
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from aiohttp import web

from services.orders.application.ingest import Ingestor, Platform, UnknownTopic
from shared.domain import errors as de
from shared.grpckit.errors import ServiceError

log = structlog.get_logger(__name__)
MAX_BODY = 2 * 1024 * 1024


def _answer(status: int, **body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def make_app(platforms: Mapping[str, Platform], ingestor: Ingestor) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        platform = platforms.get(request.match_info["platform"])
        if platform is None:
            return _answer(404, error="UNKNOWN_PLATFORM")
        body = await request.read()
        if not platform.verify(request.headers, body):
            return _answer(401, error="INVALID_SIGNATURE")
        if not platform.serves(request.headers):
            return _answer(403, error="UNKNOWN_SHOP", message="this shop is not configured")
        try:
            payload = orjson.loads(body)
        except ValueError:
            return _answer(400, error="MALFORMED_JSON")
        if _holds_nul(payload):  # no event may hold U+0000 (PostgreSQL's jsonb refuses it)
            return _answer(422, error="INVALID_CHARACTER", message="the payload holds U+0000")
        try:
            commands = platform.map(request.headers, payload)
            meta = {
                "schema": 1,
                "actor": f"webhook:{platform.name}",
                "correlation_id": request.headers.get("X-Shopify-Webhook-Id", "")[:200],
            }
            outcome = await ingestor.run(commands, meta)
        except UnknownTopic as e:
            return _answer(400, error="UNKNOWN_TOPIC", topic=str(e)[:200])
        except de.Invalid as e:
            return _answer(
                422,
                error=e.reason,
                message=e.message,
                violations=[
                    {"field": f, "reason": r, "description": d} for f, r, d in e.violations
                ],
            )
        except de.NotFound as e:
            return _answer(409, error=e.reason, message=e.message)
        except de.DomainError as e:  # a refusal that no later delivery will change
            return _answer(422, error=e.reason, message=e.message)
        except ServiceError as e:
            return _answer(503, error=e.reason, message=e.message)
        order_id = outcome.order.order_id if outcome.order else ""
        log.info("webhook.done", platform=platform.name, deferred=outcome.deferred)
        if outcome.deferred:
            return _answer(202, result="deferred", reasons=outcome.deferred, order_id=order_id)
        result = "already_applied" if outcome.already else "applied"
        return _answer(200, result=result, order_id=order_id)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/webhooks/{platform}", handle)
    return app


class WebhookServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.runner = web.AppRunner(app, access_log=None)
        self.host, self.port = host, port

    async def start(self) -> int:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = int(self.runner.addresses[0][1])  # the bound port when asked for port 0
        return self.port

    async def stop(self) -> None:
        await self.runner.cleanup()


def _holds_nul(value: object) -> bool:
    """Does any text in a decoded JSON value (keys included) hold U+0000?"""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            if "\x00" in v:
                return True
        elif isinstance(v, dict):
            todo += v.keys()
            todo += v.values()
        elif isinstance(v, list):
            todo += v
    return False
