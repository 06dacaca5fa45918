"""An explanation (domain/rules/evaluate.explain) as ``crm.segmentation.v1.RuleExplanation``,
for ExplainMembership."""

from __future__ import annotations

from datetime import date, datetime

from crm.segmentation.v1 import rules_pb2 as pb
from services.segmentation.domain.rules import Explanation
from services.segmentation.domain.rules.evaluate import FactValue


def explanation_to_proto(x: Explanation) -> pb.RuleExplanation:
    return pb.RuleExplanation(
        text=x.text,
        value=x.value,
        facts=[pb.ExplainedFact(name=name, value=fact_value(v)) for name, v in x.facts],
        parts=[explanation_to_proto(p) for p in x.parts],
    )


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
