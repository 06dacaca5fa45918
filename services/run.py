"""`make run`: every registered service in every role (shared/devrun.py does the work)."""

from __future__ import annotations

import sys

from services.registry import SERVICES
from shared import devrun

if __name__ == "__main__":
    sys.exit(devrun.main(SERVICES))
