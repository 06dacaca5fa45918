"""RFM scoring: recency, frequency and monetary scores 1-5 by quintile, and the named groups.

One definition for the suite: orders answers a customer's scores (GetCustomerMetrics) and
segmentation's rules read them (``rfm_group.EUR = 'champions'``); both score this way.

A customer's score on one measure is 1 + floor(5 * below / n), where n is the number of
customers scored and ``below`` the number of them that are strictly worse on that measure (an
older last order, fewer orders, less net revenue). So the best fifth scores 5, the worst fifth
1, and equal values always get equal scores (unlike ntile(), which splits ties arbitrarily).

Groups follow the widely used R x F grid (recency on the rows, frequency on the columns).
"""

from __future__ import annotations

# rows: recency 1..5, columns: frequency 1..5
_GRID = (
    ("hibernating", "hibernating", "at_risk", "at_risk", "cannot_lose_them"),
    ("hibernating", "hibernating", "at_risk", "at_risk", "cannot_lose_them"),
    ("about_to_sleep", "about_to_sleep", "need_attention", "loyal_customers", "loyal_customers"),
    (
        "promising",
        "potential_loyalists",
        "potential_loyalists",
        "loyal_customers",
        "loyal_customers",
    ),
    ("new_customers", "potential_loyalists", "potential_loyalists", "champions", "champions"),
)
GROUPS = tuple(sorted({g for row in _GRID for g in row}))


def score(below: int, n: int) -> int:
    if n <= 0 or not 0 <= below < n:
        raise ValueError(f"below={below} must be in 0..{n - 1}")
    return 1 + (5 * below) // n


def group(recency: int, frequency: int) -> str:
    return _GRID[recency - 1][frequency - 1]


def grid() -> list[tuple[int, int, str]]:
    """Every (recency, frequency, group) of the grid (for SQL that names groups)."""
    return [(r, f, group(r, f)) for r in range(1, 6) for f in range(1, 6)]
