"""The serve role's HTTP server (aiohttp), beside its gRPC server: the tracking endpoints at
its root (tracking_http.py) and whatever other endpoints the composition root mounts as
sub-applications (``app.add_subapp("/intake/", ...)``) before ``start``."""

from __future__ import annotations

from aiohttp import web

MAX_BODY = 1024 * 1024  # the largest body any endpoint takes; each may take less


def root_app() -> web.Application:
    return web.Application(client_max_size=MAX_BODY)


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.runner = web.AppRunner(app, access_log=None)  # access logs would hold the tokens
        self.host, self.port = host, port

    async def start(self) -> int:
        """Serve (the app is frozen from here: mount sub-apps before); the bound port."""
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = int(self.runner.addresses[0][1])  # the bound port when asked for port 0
        return self.port

    async def stop(self) -> None:
        await self.runner.cleanup()
