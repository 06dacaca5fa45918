"""The segment rule language: parse, check, format, evaluate, explain and time rules.

A rule says which contacts are in a segment, in text a marketer can type::

    orders_count >= 3 AND last_order_at > -30d AND consent.email = 'subscribed'
      AND NOT tags CONTAINS 'staff'

or as the same tree in protobuf (crm.segmentation.v1.Rule). The reference, in the modules
marketers' docs quote: syntax.py (the text), fields.py (what a rule can read), check.py (which
operators go with which values), values.py and evaluate.py (what a rule means: unset values,
windows), clock.py (time zones, today, anniversaries), timing.py (when an answer changes by the
clock alone), deps.py (what a rule depends on). Pure code: the standard library and lark only;
the SQL compiler that gives the same answers over the facts tables is
services/segmentation/adapters/rule_sql.py.
"""

from services.segmentation.domain.rules.ast import (
    AbandonedCart,
    And,
    Anniversary,
    AtTime,
    Boolean,
    Comparison,
    CountTest,
    Field,
    InSegment,
    Items,
    Not,
    Now,
    Number,
    OnDate,
    Op,
    Or,
    PlacedOrder,
    Pos,
    Purchased,
    RandomBucket,
    Range,
    Relative,
    Rule,
    Scalar,
    Text,
    Today,
    Unit,
    Value,
)
from services.segmentation.domain.rules.check import problems
from services.segmentation.domain.rules.compiled import evaluate
from services.segmentation.domain.rules.deps import (
    check_no_cycles,
    dependencies,
    find_cycle,
    segments_referenced,
)
from services.segmentation.domain.rules.errors import RuleError, Violation
from services.segmentation.domain.rules.evaluate import Explanation, explain
from services.segmentation.domain.rules.fields import FactGroup
from services.segmentation.domain.rules.formatting import format_rule
from services.segmentation.domain.rules.syntax import parse
from services.segmentation.domain.rules.timing import next_change

format = format_rule  # the name the rule language's users know

__all__ = [
    "AbandonedCart",
    "And",
    "Anniversary",
    "AtTime",
    "Boolean",
    "Comparison",
    "CountTest",
    "Explanation",
    "FactGroup",
    "Field",
    "InSegment",
    "Items",
    "Not",
    "Now",
    "Number",
    "OnDate",
    "Op",
    "Or",
    "PlacedOrder",
    "Pos",
    "Purchased",
    "RandomBucket",
    "Range",
    "Relative",
    "Rule",
    "RuleError",
    "Scalar",
    "Text",
    "Today",
    "Unit",
    "Value",
    "Violation",
    "check_no_cycles",
    "dependencies",
    "evaluate",
    "explain",
    "find_cycle",
    "format",
    "format_rule",
    "next_change",
    "parse",
    "problems",
    "segments_referenced",
]
