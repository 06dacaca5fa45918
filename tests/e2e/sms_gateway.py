"""A Twilio-style SMS gateway for the end-to-end tests, a real HTTP server in its own process
(aiohttp), so it outlives the processes a test kills and counts what reached it:
``python -m tests.e2e.sms_gateway PORT RECORD ACCOUNT_SID:AUTH_TOKEN``.

``POST /Messages.json`` (a form: To, From, Body) with basic auth. It honours
``Idempotency-Key`` as Twilio and Stripe do: the first request with a key is applied (a new
``sid``, 201); a later one with the same key and the same form is not applied again and gets
the same answer (``Idempotent-Replayed: true``); the same key with another form is 422.
Every request is appended to RECORD as one JSON line (key, form, authorized, applied, sid,
status) before it is answered. Bad credentials: 401, nothing applied.
Prints ``ready`` once it listens; stops on SIGTERM. ``SmsGateway`` runs it for a test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from shared.testing import processes
from tests.e2e.processes import ROOT, free_port

SMS_LOGIN = ("ACe2e", "e2e-sms-token")


class Gateway:
    def __init__(self, record: str, login: str) -> None:
        self.out = open(record, "a", encoding="utf-8")  # noqa: SIM115
        self.auth = "Basic " + base64.b64encode(login.encode()).decode()
        self.applied: dict[str, tuple[dict[str, str], str]] = {}  # key -> (form, sid)

    def note(self, line: dict[str, Any]) -> None:
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    async def on_message(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        key = request.headers.get("Idempotency-Key", "")
        line: dict[str, Any] = {"key": key, "form": form, "applied": False, "sid": ""}
        line["authorized"] = request.headers.get("Authorization") == self.auth
        if not line["authorized"]:
            self.note({**line, "status": 401})
            return web.json_response({"message": "authenticate"}, status=401)
        if key and key in self.applied:
            first, sid = self.applied[key]
            status = 201 if first == form else 422
            self.note({**line, "sid": sid, "status": status})
            if status == 422:
                return web.json_response({"message": "key reused with another request"}, status=422)
            return web.json_response(
                {"sid": sid, "status": "queued"},
                status=201,
                headers={"Idempotent-Replayed": "true"},
            )
        sid = "SM" + uuid.uuid4().hex
        if key:
            self.applied[key] = (form, sid)
        self.note({**line, "applied": True, "sid": sid, "status": 201})
        return web.json_response({"sid": sid, "status": "queued"}, status=201)


async def serve(port: int, record: str, login: str) -> None:
    gateway = Gateway(record, login)
    app = web.Application()
    app.router.add_post("/Messages.json", gateway.on_message)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


class SmsGateway:
    """sms_gateway.py as a process; ``requests()`` reads every request it answered."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.record = tmp / f"sms-{self.port}.jsonl"
        self.record.touch()
        self.p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.sms_gateway",
                str(self.port),
                str(self.record),
                ":".join(SMS_LOGIN),
            ],
            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"},
            stdout=subprocess.PIPE,
        )
        assert self.p.stdout is not None
        assert self.p.stdout.readline().strip() == b"ready", "the SMS gateway did not start"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text("utf-8").splitlines()]

    def stop(self) -> None:
        processes.stop(self.p, 10)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
