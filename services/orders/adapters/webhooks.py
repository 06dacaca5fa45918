"""The webhook endpoint: POST /webhooks/<platform>. Verifies the signature on the raw body,
maps the payload with the platform's module, runs the commands, and answers in the way shop
platforms understand (they retry anything but 2xx):

- 200: applied, a redelivery (nothing changed), or a topic/transition already covered
  (e.g. orders/paid after orders/create said paid) - body {"result": ..., "order_id": ...}
- 401: missing or wrong signature; 400: not JSON, unknown topic or missing header
- 422: the payload maps to bad input (unknown currency, non-integer amount, ...) - nothing
  is written, and retrying will not help
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
        try:
            payload = orjson.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError:
            return _answer(400, error="MALFORMED_JSON")
        try:
            commands = platform.map(request.headers, payload)
            if not commands:
                return _answer(200, result="ignored")
            meta = {
                "schema": 1,
                "actor": f"webhook:{platform.name}",
                "correlation_id": request.headers.get("X-Shopify-Webhook-Id", ""),
            }
            order = await ingestor.run(commands, meta)
        except UnknownTopic as e:
            return _answer(400, error="UNKNOWN_TOPIC", topic=str(e))
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
        except de.Precondition as e:
            if e.reason.startswith("ORDER_"):  # already past this step: nothing to do
                return _answer(200, result="ignored", reason=e.reason)
            return _answer(422, error=e.reason, message=e.message)
        except de.DomainError as e:
            return _answer(409, error=e.reason, message=e.message)
        except ServiceError as e:
            return _answer(503, error=e.reason, message=e.message)
        log.info("webhook.applied", platform=platform.name, commands=len(commands))
        return _answer(200, result="applied", order_id=order.order_id if order else "")

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
