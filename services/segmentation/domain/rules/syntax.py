"""The text syntax of a rule, and ``parse``.

    orders_count >= 3 AND last_order_at > -30d AND consent.email = 'subscribed'
      AND NOT tags CONTAINS 'staff'

- Conditions join with ``AND`` / ``OR`` (AND binds tighter), ``NOT`` negates the condition or
  parenthesised group after it. Keywords, field and function names are case-insensitive.
- A condition is ``<operand> <op> <value>`` (``= != <> < <= > >=``), ``<operand> BETWEEN a AND
  b`` (both ends included), ``<operand> [NOT] IN (v, ...)``, ``tags CONTAINS 'x'``,
  ``<operand> IS [NOT] SET``, a bare bool field (``recovered``), or a behaviour function:
  ``placed_order(count >= 2, total >= 5000, currency = 'EUR', within 90d)``,
  ``purchased(sku = 'TEA-1', count >= 1, within 1y)`` (or ``sku IN ('A', 'B')``),
  ``abandoned_cart(within 7d)``, ``in_segment('vip')``, ``random_bucket(0, 10)``. Arguments
  are named (any order; count defaults to ``count >= 1``, no window means ever).
- Operands: a field path (fields.py) or ``anniversary(<time field>)``.
- Values: ``'text'`` (``''`` inside is a quote), numbers (``3``, ``-1.5``, ``2e3``), ``true``,
  ``false``, relative times ``-30d`` / ``+7d`` (a sign is required in comparisons: minus is
  the past; units s m h d w y, lower case, where d = 24 h and y = 365 d; m is minutes),
  ``now``, ``today`` and absolute dates or times: ``date '2026-11-27'`` or
  ``date '2026-11-27T09:00:00Z'`` (a time needs Z or an offset). A plain text is never read
  as a date.

Errors: ``RuleError`` with the line and column of the first syntax problem, or of every
unknown field, type mismatch and bad value.
"""

from __future__ import annotations

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.exceptions import VisitError

from services.segmentation.domain.rules import errors as e
from services.segmentation.domain.rules.ast import Rule
from services.segmentation.domain.rules.calls import Failure
from services.segmentation.domain.rules.check import MAX_DEPTH, problems
from services.segmentation.domain.rules.transform import Build

MAX_LENGTH = 10_000

GRAMMAR = r"""
?start: or_

?or_: and_ (_OR and_)*
?and_: not_ (_AND not_)*
?not_: _NOT not_                              -> negation
     | "(" or_ ")"
     | predicate

predicate: operand _IS _SET                   -> is_set
         | operand _IS _NOT _SET              -> is_not_set
         | operand COMPARATOR value           -> compare
         | operand _BETWEEN value _AND value  -> between
         | operand _IN items                  -> in_list
         | operand _NOT _IN items             -> not_in_list
         | operand _CONTAINS value            -> contains
         | operand                            -> bare

?operand: path | call
path: NAME ("." NAME)*
call: NAME "(" [arg ("," arg)*] ")"
arg: NAME COMPARATOR value                    -> named_compare
   | NAME _IN items                           -> named_in
   | NAME value                               -> named_value
   | value                                    -> positional
   | path                                     -> positional_path

?value: STRING                                -> text
      | NUMBER                                -> number
      | DURATION                              -> relative
      | _TRUE                                 -> true
      | _FALSE                                -> false
      | _TODAY                                -> today
      | _NOW                                  -> now
      | _DATE STRING                          -> absolute
items: "(" value ("," value)* ")"

COMPARATOR: /!=|<>|<=|>=|=|<|>/
DURATION.2: /[+-]?\d+[smhdwy](?![A-Za-z0-9_])/
NUMBER: /[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/
STRING: /'(?:[^']|'')*'/
_AND: "and"i
_OR: "or"i
_NOT: "not"i
_IS: "is"i
_SET: "set"i
_BETWEEN: "between"i
_IN: "in"i
_CONTAINS: "contains"i
_TRUE: "true"i
_FALSE: "false"i
_TODAY: "today"i
_NOW: "now"i
_DATE: "date"i
NAME: /[a-z_][a-z0-9_]*/i
%ignore /\s+/
"""

_PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=True)

# How a syntax error names what could have come instead.
_EXPECTED = {
    "_AND": "AND",
    "_OR": "OR",
    "_NOT": "NOT",
    "_IS": "IS",
    "_SET": "SET",
    "_BETWEEN": "BETWEEN",
    "_IN": "IN",
    "_CONTAINS": "CONTAINS",
    "COMPARATOR": "an operator (= != < <= > >=)",
    "NAME": "a field or function",
    "STRING": "a text ('...')",
    "NUMBER": "a number",
    "DURATION": "a relative time (-30d)",
    "_TRUE": "true",
    "_FALSE": "false",
    "_TODAY": "today",
    "_NOW": "now",
    "_DATE": "date '...'",
    "LPAR": "(",
    "RPAR": ")",
    "COMMA": ",",
    "DOT": ".",
    "$END": "the end of the rule",
}


def parse(text: str) -> Rule:
    """The rule ``text`` says; RuleError with positions when it says none."""
    if len(text) > MAX_LENGTH:
        raise _error(e.RULE_TOO_LARGE, f"a rule is at most {MAX_LENGTH} characters", 1, 1)
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        line, column = exc.line, exc.column
        if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
            line, column = text.count("\n") + 1, len(text.rsplit("\n", 1)[-1]) + 1
        keyword = _misplaced_keyword(exc, text)
        if keyword is not None:  # read as a field: `archived AND AND recovered`
            why = (
                f"unexpected {str(keyword)!r}; expected a condition (a field, a function, ( or NOT)"
            )
            raise _error(e.RULE_SYNTAX, why, keyword.line or 1, keyword.column or 1) from None
        raise _error(e.RULE_SYNTAX, _syntax_message(exc, text), line, column) from None
    if isinstance(tree, Tree):
        _check_depth(tree)
    try:
        rule: Rule = Build().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, Failure):
            f = exc.orig_exc
            raise _error(f.reason, f.message, f.pos.line, f.pos.column) from None
        raise
    found = problems(rule)
    if found:
        raise e.RuleError(
            [
                e.Violation("", reason, message, *((n.pos.line, n.pos.column) if n.pos else (1, 1)))
                for n, reason, message in found
            ]
        )
    return rule


def _error(reason: str, message: str, line: int, column: int) -> e.RuleError:
    return e.RuleError([e.Violation("", reason, message, max(line, 1), max(column, 1))])


def _syntax_message(exc: UnexpectedInput, text: str) -> str:
    if isinstance(exc, UnexpectedCharacters):
        at = exc.pos_in_stream or 0
        char = text[at] if at < len(text) else ""
        if char == "'":
            return "a text is not closed: end it with '"
        return f"unexpected character {char!r}"
    if isinstance(exc, UnexpectedToken):
        token = str(exc.token)
        got = "the rule ends too early" if exc.token.type == "$END" else f"unexpected {token!r}"
        parser = exc.interactive_parser
        accepted = parser.accepts() if parser is not None else exc.expected
        names = sorted({_EXPECTED.get(t, t) for t in accepted})
        expected = ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]
        return f"{got}; expected {expected}" if names else got
    return "not a rule"


_KEYWORDS = frozenset(t[1:].lower() for t in _EXPECTED if t.startswith("_"))


def _misplaced_keyword(exc: UnexpectedInput, text: str) -> Token | None:
    """A keyword the parser took for a field name (where no keyword could come), just before
    the error; not one written after a dot (``attributes.in``)."""
    history = getattr(exc, "token_history", None) or []
    last = history[-1] if history else None
    if isinstance(last, Token) and last.type == "NAME" and str(last).lower() in _KEYWORDS:
        before = text[: last.start_pos or 0].rstrip()
        return None if before.endswith(".") else last
    return None


def _check_depth(tree: Tree) -> None:
    """Refuse nesting deeper than the checker allows before anything recurses over it."""
    stack: list[tuple[Tree, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        nests = node.data in ("or_", "and_", "negation")
        if depth > MAX_DEPTH + 1:
            meta = node.meta
            line, column = (meta.line, meta.column) if not meta.empty else (1, 1)
            why = f"the rule is nested more than {MAX_DEPTH} deep"
            raise _error(e.RULE_TOO_LARGE, why, line, column)
        stack.extend((c, depth + nests) for c in node.children if isinstance(c, Tree))
