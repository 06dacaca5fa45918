"""What a rule depends on: the fact groups it reads (so a change of facts re-evaluates only
the segments that read them) and the segments it names (``in_segment``), with the check that
segments never define themselves through each other."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.segmentation.domain.rules import errors as e
from services.segmentation.domain.rules.ast import (
    AbandonedCart,
    Anniversary,
    Comparison,
    Field,
    InSegment,
    Now,
    OnDate,
    PlacedOrder,
    Purchased,
    RandomBucket,
    Relative,
    Rule,
    Today,
    bounds,
    walk,
)
from services.segmentation.domain.rules.fields import FactGroup, lookup


def dependencies(rule: Rule) -> frozenset[FactGroup]:
    """The fact groups ``rule`` reads. ``time`` when its answer can change with the clock
    alone (relative times, now, today, windows, anniversaries: see next_change); ``profile``
    also for today, dates and anniversaries (the contact's time zone says when a day starts)
    and for ``random_bucket`` (it reads the contact itself: its appearing). Erasure and
    merges are not here: they take a contact out of every segment, whatever the rule reads."""
    out: set[FactGroup] = set()
    for node in walk(rule):
        if isinstance(node, Comparison):
            field = node.left.field if isinstance(node.left, Anniversary) else node.left
            out.add(_group(field))
            yearly = isinstance(node.left, Anniversary)
            values = bounds(node.value)
            if yearly or any(isinstance(v, Relative | Today | Now) for v in values):
                out.add(FactGroup.TIME)
            if yearly or any(isinstance(v, Today | OnDate) for v in values):
                out.add(FactGroup.PROFILE)  # the time zone says when a day starts
        elif isinstance(node, PlacedOrder):
            out.add(FactGroup.ORDERS)
        elif isinstance(node, Purchased):
            out.update((FactGroup.PURCHASES, FactGroup.ORDERS))  # cancellations
        elif isinstance(node, AbandonedCart):
            out.add(FactGroup.CARTS)
        elif isinstance(node, InSegment):
            out.add(FactGroup.SEGMENTS)
        elif isinstance(node, RandomBucket):
            out.add(FactGroup.PROFILE)
        if isinstance(node, PlacedOrder | Purchased | AbandonedCart) and node.within:
            out.add(FactGroup.TIME)
    return frozenset(out)


def _group(field: Field) -> FactGroup:
    info = lookup(field.path)
    if isinstance(info, str):
        raise ValueError(info)
    return info.group


def segments_referenced(rule: Rule) -> frozenset[str]:
    """The keys ``rule`` names with ``in_segment``."""
    return frozenset(n.key for n in walk(rule) if isinstance(n, InSegment))


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in ``graph`` (segment key -> keys its rule references) as the keys along it,
    first key repeated at the end (``['a', 'b', 'a']``); None without one. Keys that no
    segment defines end a path (whether they exist is not a cycle's business)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path: list[str] = [root]
        stack = [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt in state or nxt not in graph:
                continue
            state[nxt] = 1
            path.append(nxt)
            stack.append(iter(sorted(graph[nxt])))
    return None


def check_no_cycles(graph: Mapping[str, Iterable[str]]) -> None:
    """RuleError(SEGMENT_CYCLE) naming the cycle when segments reference each other in a
    loop (a segment naming itself included)."""
    cycle = find_cycle(graph)
    if cycle is not None:
        loop = " -> ".join(cycle)
        message = f"segments cannot depend on themselves: {loop}"
        raise e.RuleError([e.Violation("", e.SEGMENT_CYCLE, message)])
