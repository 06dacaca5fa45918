"""The tracking endpoints (aiohttp, on the serve role's HTTP port), under TRACKING_BASE_URL:

- ``GET /o/<token>``: the open pixel, a 1x1 transparent GIF (MessageOpened); a bad or forged
  token, or an unknown message: 404, no pixel, nothing written.
- ``GET /c/<token>``: 302 to the URL recorded for that message and link (MessageClicked); any
  other token: 404 and no redirect.
- ``GET /u/<token>``: a small page with an "Unsubscribe" button (a form POST to the same URL).
  It writes nothing: link scanners and previews fetch URLs.
- ``POST /u/<token>``: the body ``List-Unsubscribe=One-Click`` (RFC 8058, from the mailbox) or
  the page's ``unsubscribe=confirm``, form-encoded (urlencoded or multipart): contacts records
  the withdrawal, then MessageUnsubscribed; 200 with a short page. A body that is neither:
  400; an unknown token: 404; a contact erased since: 410; contacts away: 503 (the mailbox
  retries; a retry has one effect). Nothing is written on any 4xx.

No HEAD on /o and /c (405): a HEAD must not count as an open or a click. Pages are HTML with a
strict Content-Security-Policy; no answer names the contact."""

from __future__ import annotations

import base64
import html
import ipaddress
from collections.abc import Sequence

import structlog
from aiohttp import web

from services.notifications.application.tracking import ONE_CLICK, PAGE, Evidence, Result, Tracking
from shared.domain.errors import NotFound, Precondition
from shared.grpckit.errors import ServiceError
from shared.metrics import NOTIFICATIONS_TRACKING

log = structlog.get_logger(__name__)
MAX_BODY = 4096  # an unsubscribe POST is one short field
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
SECURITY = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
BODIES = {("List-Unsubscribe", "One-Click"): ONE_CLICK, ("unsubscribe", "confirm"): PAGE}
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


LABELS = {
    Result.RECORDED: "recorded",
    Result.REPEAT: "repeat",
    Result.UNKNOWN: "invalid",
    Result.TEST: "test",
    Result.GONE: "gone",
}


def _count(kind: str, result: Result | str) -> None:
    label = LABELS[result] if isinstance(result, Result) else result
    NOTIFICATIONS_TRACKING.labels(kind=kind, result=label).inc()


def _page(status: int, title: str, text: str, form: bool = False) -> web.Response:
    button = (
        '<form method="post"><input type="hidden" name="unsubscribe" value="confirm">'
        '<button type="submit">Unsubscribe</button></form>'
        if form
        else ""
    )
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="robots" content="noindex">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:32em;margin:4em auto;padding:0 1em}"
        "button{font-size:1em;padding:.5em 1.5em}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{button}</body></html>"
    )
    headers = {**SECURITY, "Content-Security-Policy": PAGE_POLICY}
    return web.Response(status=status, text=body, content_type="text/html", headers=headers)


def _unknown() -> web.Response:
    return _page(404, "Unknown link", "This link is not known here.")


async def _source(request: web.Request) -> str | None:
    """The unsubscribe POST's source from its form body, None when it is not one of ours."""
    if request.content_type not in FORMS or (request.content_length or 0) > MAX_BODY:
        return None
    try:
        form = await request.post()
    except (ValueError, web.HTTPException):  # malformed or too large
        return None
    fields = [(k, v) for k, v in form.items() if isinstance(v, str)]
    if len(fields) != len(form):
        return None
    for pair, source in BODIES.items():
        if pair in fields:
            return source
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(text: str) -> list[Network]:
    """TRUSTED_PROXIES: comma-separated addresses or networks ("10.0.0.0/8, ::1")."""
    return [
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    ]


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the
    X-Forwarded-For entries are read from the right (the nearest hop first), trusted proxies
    skipped, and the first other address is the client (anything before it, which the client
    could have written, is ignored). A malformed entry ends the walk at the last good one."""

    def is_trusted(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in network for network in trusted)

    client = peer
    hops = [h.strip() for line in forwarded_for for h in line.split(",")]
    for hop in reversed(hops):
        if not is_trusted(client):
            break
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        client = hop
    return client


def _evidence(request: web.Request, trusted: Sequence[Network]) -> Evidence:
    forwarded = request.headers.getall("X-Forwarded-For", [])
    address = client_address(request.remote or "", forwarded, trusted)
    return Evidence(address, request.headers.get("User-Agent", ""))


def add_routes(app: web.Application, tracking: Tracking, trusted: Sequence[Network] = ()) -> None:
    """The tracking endpoints on ``app`` (the serve role's HTTP server: see http_server.py);
    ``trusted``: the proxies whose X-Forwarded-For is believed (TRUSTED_PROXIES)."""

    async def pixel(request: web.Request) -> web.Response:
        result = await tracking.open(request.match_info["token"])
        _count("open", result)
        if result == Result.UNKNOWN:
            return web.Response(status=404, text="unknown", headers=SECURITY)
        return web.Response(body=PIXEL, content_type="image/gif", headers=SECURITY)

    async def click(request: web.Request) -> web.Response:
        result, url = await tracking.click(request.match_info["token"])
        _count("click", result)
        if result == Result.UNKNOWN:
            return _unknown()
        return web.Response(status=302, headers={**SECURITY, "Location": url})

    async def page(request: web.Request) -> web.Response:
        result = await tracking.unsubscribable(request.match_info["token"])
        _count("unsubscribe_page", "shown" if result != Result.UNKNOWN else result)
        if result == Result.UNKNOWN:
            return _unknown()
        if result == Result.TEST:
            return _page(
                200, "Test message", "This was a test message: there is nothing to unsubscribe."
            )
        return _page(
            200,
            "Unsubscribe",
            "Press the button to receive no more marketing messages on this channel.",
            form=True,
        )

    async def unsubscribe(request: web.Request) -> web.Response:
        source = await _source(request)
        if source is None:
            _count("unsubscribe", "invalid")
            return _page(400, "Bad request", "This request is not an unsubscribe request.")
        try:
            result = await tracking.unsubscribe_by(
                request.match_info["token"], source, _evidence(request, trusted)
            )
        except (NotFound, Precondition) as e:  # contacts refused: the contact is gone
            log.info("tracking.unsubscribe_refused", reason=e.reason)
            result = Result.GONE
        except ServiceError as e:
            log.warning("tracking.unsubscribe_unavailable", reason=e.reason)
            _count("unsubscribe", "unavailable")
            page = _page(503, "Try again later", "We could not record this now. Please retry.")
            page.headers["Retry-After"] = "60"
            return page
        _count("unsubscribe", result)
        if result == Result.UNKNOWN:
            return _unknown()
        if result == Result.GONE:
            return _page(410, "Unsubscribed", "There is no longer any subscription here.")
        if result == Result.TEST:
            return _page(200, "Test message", "This was a test message: nothing was changed.")
        return _page(200, "Unsubscribed", "You will receive no more marketing messages here.")

    app.router.add_get("/o/{token}", pixel, allow_head=False)
    app.router.add_get("/c/{token}", click, allow_head=False)
    app.router.add_get("/u/{token}", page)
    app.router.add_post("/u/{token}", unsubscribe)
