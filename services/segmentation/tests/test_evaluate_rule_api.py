"""EvaluateRule through the real API: a rule, as text or as a tree, evaluated for one contact on
its current facts now, with the explanation ExplainMembership gives; bad input answered with
the parser's reasons, an unknown contact NOT_FOUND, and nothing written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from crm.segmentation.v1 import segmentation_pb2 as pb
from crm.segmentation.v1 import segmentation_pb2_grpc as pb_grpc
from services.segmentation.tests.conftest import Env
from services.segmentation.tests.helpers import create, expect_error, register

pytestmark = pytest.mark.timeout(120)
RULE = "tags CONTAINS 'ev-vip' AND orders_count >= 1"


async def evaluate(env: Env, contact: str, rule: str) -> pb.EvaluateRuleResponse:
    return await env.stub.EvaluateRule(pb.EvaluateRuleRequest(contact_id=contact, rule=rule))


async def test_a_rule_follows_the_contacts_current_facts(env: Env) -> None:
    contact = await register(env, tags=["ev-vip"])
    await env.settle()
    before = await env.store.head_position()
    got = await evaluate(env, contact, "tags contains 'ev-vip' and orders_count >= 1")
    assert got.rule == RULE
    assert got.matches is False and got.explanation.value is False
    tags, orders = got.explanation.parts
    assert (tags.value, orders.value) == (True, False)
    assert {f.name: f.value for f in orders.facts}["orders_count"].number_value == 0
    assert await env.store.head_position() == before  # nothing written

    await env.order(contact, datetime.now(UTC) - timedelta(hours=1))
    await env.settle()
    got = await evaluate(env, contact, RULE)
    assert got.matches is True and [p.value for p in got.explanation.parts] == [True, True]
    other = await register(env, tags=["someone-else"])
    await env.settle()
    assert (await evaluate(env, other, RULE)).matches is False


async def test_a_rule_as_a_tree_answers_as_its_text(env: Env) -> None:
    contact = await register(env, tags=["ev-tree"])
    await env.settle()
    seg = await create(env, "tags CONTAINS 'ev-tree'")  # its answer carries the rule as a tree
    got = await env.stub.EvaluateRule(
        pb.EvaluateRuleRequest(contact_id=contact, rule_tree=seg.rule_tree)
    )
    assert got.matches is True and got.rule == "tags CONTAINS 'ev-tree'"
    await expect_error(
        env.stub.EvaluateRule(
            pb.EvaluateRuleRequest(contact_id=contact, rule="tags IS SET", rule_tree=seg.rule_tree)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "RULE_AMBIGUOUS",
    )


async def test_bad_input_and_unknown_contacts_are_refused(env: Env) -> None:
    contact = await register(env)
    await env.settle()
    bad = [
        (contact, "tags CONTAINS", grpc.StatusCode.INVALID_ARGUMENT, "RULE_SYNTAX"),
        (contact, "nope = 1", grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_FIELD"),
        ("not-a-uuid", RULE, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONTACT_ID"),
        (str(uuid.uuid4()), RULE, grpc.StatusCode.NOT_FOUND, "CONTACT_NOT_FOUND"),
    ]
    for contact_id, rule, code, reason in bad:
        await expect_error(evaluate(env, contact_id, rule), code, reason)


async def test_an_auditor_sees_personal_facts_redacted(env: Env) -> None:
    contact = await register(env, tags=["ev-audit"])
    await env.settle()
    async with env.served.channel_as("auditor") as ch:
        got = await pb_grpc.SegmentationServiceStub(ch).EvaluateRule(
            pb.EvaluateRuleRequest(contact_id=contact, rule="email_domain = 'shop.example'")
        )
    assert got.matches is True
    [fact] = got.explanation.facts
    assert fact.name == "email_domain" and fact.redacted and not fact.HasField("value")
