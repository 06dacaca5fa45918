"""Rows as the column arrays of one ``unnest`` statement: a batch of any size written in one
round trip (``INSERT … SELECT * FROM unnest($1::uuid[], $2::text[])``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """``width`` lists, the i-th holding every row's i-th value (empty lists for no rows)."""
    return [[row[i] for row in rows] for i in range(width)]
