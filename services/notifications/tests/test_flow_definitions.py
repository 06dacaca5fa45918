"""Flow definitions: the shipped examples read from YAML through the protobuf schema check
clean; each kind of mistake is reported at the step it is in; a loop is refused exactly when a
run could go round it without waiting (a property against an independent cycle check)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from crm.notifications.v1 import flow_definition_pb2 as flows_pb2
from services.notifications.domain.flows import definition as fd
from services.notifications.domain.flows.check import checked

EXAMPLES = sorted((Path(__file__).parents[1] / "examples" / "flows").glob("*.yaml"))


def json_form(text: str) -> dict[str, Any]:
    """As the API sees a file: YAML → the proto (strict: unknown fields fail) → its JSON form."""
    message = json_format.ParseDict(yaml.safe_load(text), flows_pb2.FlowDefinition())
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_shipped_flows_check_clean(path: Path) -> None:
    flow, problems = checked(json_form(path.read_text()))
    assert problems == []
    assert flow.key == path.stem and flow.steps


def test_an_example_reads_as_written() -> None:
    flow, _ = checked(json_form((EXAMPLES[0].parent / "welcome-series.yaml").read_text()))
    assert flow.trigger == fd.EventTrigger("crm.contacts.v1.ConsentGranted", {"channel": "email"})
    assert [s.id for s in flow.steps] == ["welcome", "wait-for-order", "tips", "done"]
    wait = flow.steps[1].action
    assert isinstance(wait, fd.WaitForEvent) and wait.timeout is not None
    assert wait.timeout.total_seconds() == 3 * 86400
    assert flow.steps[1].successors() == ("done", "tips")
    assert flow.re_entry == fd.NEVER


def test_unknown_fields_are_refused_by_the_schema() -> None:
    with pytest.raises(json_format.ParseError):
        json_form("key: x\nstepz: []\n")


BASE: dict[str, Any] = {
    "key": "f",
    "name": "F",
    "trigger": {"event": {"event_type": "crm.orders.v1.CartAbandoned"}},
    "steps": [
        {"id": "a", "delay": {"duration": "60s"}, "next": "b"},
        {"id": "b", "send": {"template_key": "t"}},
    ],
}


def with_(path: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = d
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value
    return d


@pytest.mark.parametrize(
    "flow,field,reason",
    [
        (with_("key", "Bad Key"), "key", "FLOW_KEY_INVALID"),
        (with_("trigger", {}), "trigger", "TRIGGER_REQUIRED"),
        (
            with_("trigger.event.event_type", "OrderPlaced"),
            "trigger.event.event_type",
            "EVENT_TYPE_INVALID",
        ),
        (
            with_("trigger.event.event_type", "crm.segmentation.v1.ContactEnteredSegment"),
            "trigger.event.segment",
            "SEGMENT_REQUIRED",
        ),
        (
            with_("trigger", {"date": {"attribute": "birthday", "local_time": "25:00"}}),
            "trigger.date.local_time",
            "LOCAL_TIME_INVALID",
        ),
        (
            with_("trigger", {"date": {"attribute": "birthday"}}),
            "trigger.date.local_time",
            "LOCAL_TIME_REQUIRED",
        ),
        (
            with_("trigger", {"date": {"local_time": "09:00"}}),
            "trigger.date.attribute",
            "ATTRIBUTE_REQUIRED",
        ),
        (
            with_("trigger", {"date": {"attribute": "Birth Day", "local_time": "09:00"}}),
            "trigger.date.attribute",
            "ATTRIBUTE_INVALID",
        ),
        (
            with_(
                "trigger",
                {"date": {"attribute": "birthday", "local_time": "09:00", "offset_days": -400}},
            ),
            "trigger.date.offset_days",
            "OFFSET_INVALID",
        ),
        (with_("steps", []), "steps", "STEPS_REQUIRED"),
        (with_("steps.1.id", "a"), "steps[1].id", "STEP_ID_DUPLICATE"),
        (with_("steps.0.next", "nowhere"), "steps[0].next", "STEP_UNKNOWN"),
        (with_("steps.0.delay", {}), "steps[0].delay", "DELAY_REQUIRED"),
        (with_("steps.0.delay", {"duration": "0s"}), "steps[0].delay.duration", "DURATION_INVALID"),
        (
            with_("steps.1.send", {"transactional": True}),
            "steps[1].send.template_key",
            "TEMPLATE_REQUIRED",
        ),
        (with_("steps.1", {"id": "b"}), "steps[1]", "STEP_ACTION_REQUIRED"),
        (
            with_("steps.1", {"id": "b", "exit": {}, "next": "a"}),
            "steps[1].next",
            "NEXT_NOT_ALLOWED",
        ),
        (with_("steps.0.next", ""), "steps[1]", "STEP_UNREACHABLE"),
        (
            with_("steps.1", {"id": "b", "tag": {"add": ["vip"]}, "next": "b"}),
            "steps[1]",
            "LOOP_WITHOUT_DELAY",
        ),
        (
            with_(
                "steps.1",
                {"id": "b", "wait_for_event": {"event_type": "crm.orders.v1.OrderPlaced"}},
            ),
            "steps[1].wait_for_event.timeout",
            "TIMEOUT_REQUIRED",
        ),
        (
            with_("steps.1", {"id": "b", "condition": {"in_segment": "vip", "if_true": "a"}}),
            "steps[1].condition.if_false",
            "STEP_REQUIRED",
        ),
        (
            with_("steps.1", {"id": "b", "webhook": {"url": "ftp://x"}}),
            "steps[1].webhook.url",
            "URL_INVALID",
        ),
        (
            with_("re_entry", {"policy": "RE_ENTRY_POLICY_AFTER_DAYS"}),
            "re_entry.days",
            "RE_ENTRY_DAYS_INVALID",
        ),
    ],
)
def test_each_mistake_is_named_where_it_is(flow: dict[str, Any], field: str, reason: str) -> None:
    _, problems = checked(json_form(yaml.safe_dump(flow)))
    assert (field, reason) in [(f, r) for f, r, _ in problems], problems


def test_a_loop_through_a_delay_is_allowed() -> None:
    flow = with_("steps.1", {"id": "b", "tag": {"add": ["vip"]}, "next": "a"})
    assert checked(json_form(yaml.safe_dump(flow)))[1] == []


# Random graphs: n steps, each a delay (waits) or a tag (does not), with up to two successors
# (a condition when two).
graphs = st.integers(1, 7).flatmap(
    lambda n: st.lists(
        st.tuples(st.booleans(), st.lists(st.integers(0, n - 1), max_size=2, unique=True)),
        min_size=n,
        max_size=n,
    )
)


def _flow(graph: list[tuple[bool, list[int]]]) -> dict[str, Any]:
    steps = []
    for i, (waits, succ) in enumerate(graph):
        step: dict[str, Any] = {"id": f"s{i}"}
        if len(succ) == 2:
            step["condition"] = {"rule": "x", "if_true": f"s{succ[0]}", "if_false": f"s{succ[1]}"}
            if waits:  # a wait step branches too
                step = {
                    "id": f"s{i}",
                    "wait_for_event": {
                        "event_type": "crm.orders.v1.OrderPlaced",
                        "timeout": "60s",
                        "on_event": f"s{succ[0]}",
                        "on_timeout": f"s{succ[1]}",
                    },
                }
        else:
            step["delay" if waits else "tag"] = {"duration": "60s"} if waits else {"add": ["t"]}
            if succ:
                step["next"] = f"s{succ[0]}"
        steps.append(step)
    return {**BASE, "steps": steps}


def _has_busy_cycle(graph: list[tuple[bool, list[int]]]) -> bool:
    """Kahn's algorithm on the steps that do not wait: a cycle is what cannot be peeled off."""
    edges = {i: set(s) for i, (waits, s) in enumerate(graph) if not waits}
    edges = {i: {j for j in s if j in edges} for i, s in edges.items()}
    while True:
        sinks = [i for i, s in edges.items() if not s]
        if not sinks:
            return bool(edges)
        for i in sinks:
            del edges[i]
        edges = {i: s - set(sinks) for i, s in edges.items()}


@given(graphs)
def test_loops_are_refused_exactly_when_they_never_wait(
    graph: list[tuple[bool, list[int]]],
) -> None:
    _, problems = checked(_flow(graph))
    reasons = {r for _, r, _ in problems}
    assert reasons <= {"LOOP_WITHOUT_DELAY", "STEP_UNREACHABLE"}, problems
    assert ("LOOP_WITHOUT_DELAY" in reasons) == _has_busy_cycle(graph)


def test_error_texts_quote_a_prefix_of_what_was_sent() -> None:
    long_loop = {
        **BASE,
        "steps": [
            {"id": f"s{i}", "tag": {"add": ["t"]}, "next": f"s{(i + 1) % 50}"} for i in range(50)
        ],
    }
    [(_, reason, text)] = checked(long_loop)[1]
    assert reason == "LOOP_WITHOUT_DELAY" and text.count("->") == 8 and "…" in text
    [(_, reason, text)] = checked(with_("steps.0.next", "x" * 4000))[1]
    assert reason == "STEP_UNKNOWN" and len(text) < 80
