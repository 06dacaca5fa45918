"""python -m services.notifications serve|project"""

from __future__ import annotations

import sys

from services.notifications.spec import SPEC
from shared import runtime

if __name__ == "__main__":
    runtime.main(sys.argv, SPEC)
