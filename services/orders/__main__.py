"""python -m services.orders serve|project"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from services.orders import app
from shared.grpckit.server import run_until_signalled
from shared.logs import configure


def main(argv: list[str]) -> None:
    role = argv[1] if len(argv) > 1 else ""
    if role not in ("serve", "project"):
        raise SystemExit("usage: python -m services.orders serve|project")
    settings = app.OrdersSettings()
    configure(settings.log_level, settings.log_format)
    entry = app.serve if role == "serve" else app.project
    uvloop.install()
    asyncio.run(run_until_signalled(lambda stop: entry(settings, stop)))


if __name__ == "__main__":
    main(sys.argv)
