"""python -m services.segmentation serve|project"""

from __future__ import annotations

import sys

from services.segmentation.spec import SPEC
from shared import runtime

if __name__ == "__main__":
    runtime.main(sys.argv, SPEC)
