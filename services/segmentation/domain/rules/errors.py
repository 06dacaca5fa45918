"""What is wrong with a rule: ``RuleError`` and its violations.

A violation names where the problem is twice over: ``field_path`` (inside a protobuf rule
tree, e.g. ``all.rules[1].comparison.value``; empty for text) and ``line`` / ``column`` (in the
rule's text, 1-based; 0 when the rule came as a tree). The API turns a RuleError into
INVALID_ARGUMENT with one BadRequest field violation per entry, whose description starts with
"line L, column C:" for text.
"""

from __future__ import annotations

from typing import NamedTuple

# Reason codes (stable: callers and the marketers' docs use them).
RULE_SYNTAX = "RULE_SYNTAX"  # not a rule: unexpected character or token
RULE_TOO_LARGE = "RULE_TOO_LARGE"  # too long, too deep, too many parts or items
UNKNOWN_FIELD = "UNKNOWN_FIELD"
UNKNOWN_FUNCTION = "UNKNOWN_FUNCTION"
UNKNOWN_ARGUMENT = "UNKNOWN_ARGUMENT"  # placed_order(colour = 'red')
DUPLICATE_ARGUMENT = "DUPLICATE_ARGUMENT"
MISSING_ARGUMENT = "MISSING_ARGUMENT"  # purchased(within 1y): which SKU?
WRONG_ARITY = "WRONG_ARITY"  # random_bucket(1)
TYPE_MISMATCH = "TYPE_MISMATCH"  # tags > 3, orders_count = 'x', anniversary(locale)
BAD_DURATION = "BAD_DURATION"  # within -3d, last_order_at > 30d (no sign), +3h with anniversary
BAD_DATE = "BAD_DATE"  # date '2026-02-30', a time without its offset
BAD_NUMBER = "BAD_NUMBER"  # not finite, not a whole number where one is needed
BAD_TEXT = "BAD_TEXT"  # NUL characters, too long
BAD_ARGUMENT = "BAD_ARGUMENT"  # random_bucket(50, 10), currency = 'euro'
SEGMENT_CYCLE = "SEGMENT_CYCLE"  # in_segment() leading back to the segment itself


class Violation(NamedTuple):
    field_path: str
    reason: str
    message: str
    line: int = 0
    column: int = 0

    @property
    def description(self) -> str:
        """The message, prefixed with its position when there is one."""
        if self.line:
            return f"line {self.line}, column {self.column}: {self.message}"
        return self.message


class RuleError(Exception):
    """A rule that cannot be used, with every violation found (at least one)."""

    def __init__(self, violations: list[Violation] | tuple[Violation, ...]) -> None:
        if not violations:
            raise ValueError("a RuleError needs at least one violation")
        self.violations = tuple(violations)
        first = self.violations[0]
        more = len(self.violations) - 1
        super().__init__(first.description + (f" (+{more} more)" if more else ""))

    @property
    def reason(self) -> str:
        return self.violations[0].reason
