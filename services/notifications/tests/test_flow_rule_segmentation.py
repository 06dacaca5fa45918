"""A flow's rule condition answered by a real segmentation over gRPC: contacts, segmentation
and notifications served on one store (tests/campaign_env.py), the flow engine and its effects
worker run here on it with segmentation's client as the project role builds it. A VIP by tags
takes the true branch, anyone else the false one, each once; the client's refusals and a
contact segmentation does not know are what the worker expects."""

from __future__ import annotations

import uuid

import pytest

from services.notifications.adapters.flow_effects_table import PostgresEffects
from services.notifications.application.flow_effects import FlowEffects
from services.notifications.application.flows import FlowCommands
from services.notifications.domain.flows import run as runs
from services.notifications.tests.campaign_env import campaign_env
from services.notifications.tests.flow_env import Env as FlowEnv
from shared.domain.errors import Invalid
from shared.grpckit.errors import Unavailable

pytestmark = pytest.mark.timeout(120)
RULE = "tags CONTAINS 'vip'"
WELCOME = {
    "key": "vip-welcome",
    "name": "VIP welcome",
    "trigger": {"event": {"event_type": "crm.contacts.v1.ConsentGranted"}},
    "steps": [
        {"id": "check", "condition": {"rule": RULE, "if_true": "vip", "if_false": "plain"}},
        {"id": "vip", "send": {"template_key": "vip-welcome"}, "next": "done"},
        {"id": "plain", "send": {"template_key": "welcome"}, "next": "done"},
        {"id": "done", "exit": {}},
    ],
}


async def test_a_rule_condition_takes_the_branch_segmentation_answers(dsn: str) -> None:
    async with campaign_env(dsn) as env:
        segments = env.upstreams.segments
        flows = FlowEnv(env.store)
        effects = FlowEffects(PostgresEffects(env.store), flows.sent, flows.sent, segments)
        await FlowCommands(env.store).create(WELCOME)
        vip, plain = await env.contact(["vip"]), await env.contact(["new"])
        await env.settle()  # segmentation has seen both
        await flows.runner.catch_up()  # their consents start a run each, which asks
        assert [r.run.status for r in await flows.runs()] == [runs.ASKING] * 2
        assert await effects.tick() == 2  # both asks answered
        assert await effects.tick() == 2  # the sends they led to
        assert await effects.tick() == 0
        sent = sorted((r.contact_id, r.template_key) for r in flows.sent.requests)
        assert sent == sorted([(vip, "vip-welcome"), (plain, "welcome")])
        assert [r.run.status for r in await flows.runs()] == [runs.DONE] * 2

        assert await segments.evaluate(vip, RULE) is True
        with pytest.raises(Invalid) as refused:
            await segments.evaluate(vip, "tags CONTAINS")
        assert refused.value.reason == "RULE_SYNTAX"
        with pytest.raises(Unavailable) as unknown:
            await segments.evaluate(str(uuid.uuid4()), RULE)
        assert unknown.value.reason == "SEGMENTATION_CONTACT_UNKNOWN"
