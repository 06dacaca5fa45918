"""python -m services.contacts serve|project"""

from __future__ import annotations

import sys

from services.contacts import app
from shared import runtime
from shared.settings import Settings


def main(argv: list[str]) -> None:
    runtime.main(argv, "contacts", Settings, app.serve, app.project)


if __name__ == "__main__":
    main(sys.argv)
