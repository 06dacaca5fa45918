"""Test processes (servers the tests start: an SMTP server, an SMS gateway, a worker) ended
as an operator would: SIGTERM, then SIGKILL should it not stop in time."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop(p: subprocess.Popen[Any], timeout: float = 10) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
