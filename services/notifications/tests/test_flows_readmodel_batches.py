"""The flows read model does not depend on batch boundaries: random sequences of flow commands
(create, revise, pause, resume, archive, over two keys) go through FlowCommands into a real
store; the log is then projected in random batches, and every row must equal the flow's fold
(what GetFlow answers), every version row the version's definition."""

from __future__ import annotations

import contextlib

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.notifications.adapters.flows_readmodel import SCHEMA, FlowsProjection
from services.notifications.application.flows import FlowCommands
from services.notifications.domain.flows import flow as domain
from services.notifications.tests.test_flow_definitions import EXAMPLES, json_form
from shared.domain.errors import DomainError
from shared.testing.batches import batch_sizes, fresh_store, project_in_batches
from shared.testing.postgres import DatabaseFactory

OPS = ("create", "revise", "revise", "pause", "resume", "archive")
CHANGES = {"pause": domain.decide_pause, "resume": domain.decide_resume}
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
plans = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1), st.integers(0, 9)), max_size=20)


@SETTINGS
@given(plan=plans, sizes=batch_sizes)
async def test_flow_rows_equal_the_folds_whatever_the_batches(
    databases: DatabaseFactory, plan: list[tuple[str, int, int]], sizes: list[int]
) -> None:
    definitions = [
        json_form((EXAMPLES[0].parent / f"{n}.yaml").read_text())
        for n in ("win-back", "review-request")
    ]
    async with fresh_store(databases) as store:
        flows = FlowCommands(store)
        for op, which, v in plan:
            definition = definitions[which]
            with contextlib.suppress(DomainError):  # refused as a client would see it refused
                if op == "create":
                    await flows.create(definition)
                elif op == "revise":
                    await flows.update({**definition, "name": f"{definition['name']} {v}"})
                else:
                    flow_id = await flows.id_of(definition["key"])
                    decide = CHANGES.get(op, domain.decide_archive)
                    await flows.change(flow_id, decide)
        await project_in_batches(store, FlowsProjection(), sizes)
        rows = await store.pool.fetch(f"SELECT * FROM {SCHEMA}.flows")
        for r in rows:
            folded = await flows.get(str(r["flow_id"]))
            assert (r["key"], r["state"], r["latest_version"], r["version"]) == (
                folded.key,
                folded.state,
                folded.latest.version,
                folded.version,
            )
            versions = await store.pool.fetch(
                f"SELECT version, definition FROM {SCHEMA}.flow_versions WHERE flow_id = $1"
                " ORDER BY version",
                r["flow_id"],
            )
            assert [(v["version"], orjson.loads(v["definition"])) for v in versions] == [
                (v.version, dict(v.definition)) for v in folded.versions
            ]
        created = await store.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE type = $1", domain.CREATED
        )
        assert len(rows) == created
