"""An explanation (domain/rules/evaluate.explain) as ``crm.segmentation.v1.RuleExplanation``,
for ExplainMembership. The facts read from the contact's personal data (its attributes, its
email's domain) are personal data too: left out, marked ``redacted``, for a caller who may not
see it."""

from __future__ import annotations

import re
from datetime import date, datetime

from crm.segmentation.v1 import rules_pb2 as pb
from services.segmentation.domain.rules import Explanation
from services.segmentation.domain.rules.evaluate import FactValue

PERSONAL = re.compile(r"\b(attributes\.|email_domain\b)")  # "anniversary(attributes.birthday)"


def reads_personal_data(x: Explanation) -> bool:
    """Whether the explanation shows a value of a personal fact."""
    return any(PERSONAL.search(name) and v is not None for name, v in x.facts) or any(
        reads_personal_data(p) for p in x.parts
    )


def explanation_to_proto(x: Explanation, shown: bool = True) -> pb.RuleExplanation:
    """``shown``: with the values of personal facts; else without them, marked redacted."""
    return pb.RuleExplanation(
        text=x.text,
        value=x.value,
        facts=[_fact(name, v, shown) for name, v in x.facts],
        parts=[explanation_to_proto(p, shown) for p in x.parts],
    )


def _fact(name: str, v: FactValue, shown: bool) -> pb.ExplainedFact:
    if not shown and PERSONAL.search(name) and v is not None:
        return pb.ExplainedFact(name=name, redacted=True)
    return pb.ExplainedFact(name=name, value=fact_value(v))


def fact_value(v: FactValue) -> pb.Value | None:
    """A fact's value; None (the field unset) when the fact is unset."""
    if v is None:
        return None
    if isinstance(v, bool):
        return pb.Value(bool_value=v)
    if isinstance(v, int | float):
        return pb.Value(number_value=float(v))
    if isinstance(v, str):
        return pb.Value(string_value=v)
    if isinstance(v, datetime):
        out = pb.Value()
        out.time_value.FromDatetime(v)
        return out
    if isinstance(v, date):
        return pb.Value(date_value=pb.CalendarDate(year=v.year, month=v.month, day=v.day))
    return pb.Value(list_value=pb.ValueList(values=[pb.Value(string_value=s) for s in v]))
