"""python -m services.orders serve|project"""

from __future__ import annotations

import sys

from services.orders import app
from shared import runtime


def main(argv: list[str]) -> None:
    runtime.main(argv, "orders", app.OrdersSettings, app.serve, app.project)


if __name__ == "__main__":
    main(sys.argv)
