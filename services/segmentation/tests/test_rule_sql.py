"""The SQL compiler against a real PostgreSQL: random rules over random facts rows select
exactly the contacts the Python evaluator admits, at random instants; parameter numbering;
local midnight resolved the same way on both sides."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.segmentation.adapters.facts_tables import FACTS_DDL
from services.segmentation.adapters.rule_sql import compile_rule, members_query
from services.segmentation.domain import rules as r
from services.segmentation.domain.facts import CartFact, Facts, OrderFact, PurchaseFact
from services.segmentation.domain.rules import clock
from services.segmentation.tests.fact_strategies import BASES, facts, instants
from services.segmentation.tests.rule_strategies import rules
from shared.testing.postgres import DatabaseFactory

SCHEMA = "rules_scratch"
TABLES = ("contacts", "orders", "purchases", "carts", "memberships", "rfm_scores")


@pytest.fixture(scope="module")
async def conn(databases: DatabaseFactory) -> AsyncIterator[asyncpg.Connection]:
    """One database for the module, the facts tables in a scratch schema."""
    connection = await asyncpg.connect(await databases.create())
    await connection.execute(f"CREATE SCHEMA {SCHEMA}; SET search_path TO {SCHEMA}; {FACTS_DDL}")
    await connection.execute("SET search_path TO public")  # the compiler names the schema
    yield connection
    await connection.close()


def _id(*parts: int) -> str:
    n = 0
    for p in parts:
        n = (n << 24) | p
    return str(uuid.UUID(int=n))


def renumbered(f: Facts, i: int) -> Facts:
    """The same facts with ids unique across contacts (contact i)."""
    orders = {o.order_id: _id(i + 1, 2, j) for j, o in enumerate(f.orders)}
    return replace(
        f,
        contact_id=_id(i + 1, 1, 0),
        orders=tuple(replace(o, order_id=orders[o.order_id]) for o in f.orders),
        purchases=tuple(replace(p, order_id=orders[p.order_id]) for p in f.purchases),
        carts=tuple(replace(c, cart_id=_id(i + 1, 3, j)) for j, c in enumerate(f.carts)),
    )


def _typed(v: object) -> dict[str, object]:
    if isinstance(v, bool):
        return {"b": v}
    if isinstance(v, int | float):
        return {"n": v}
    if isinstance(v, datetime):
        return {"t": v.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    return {"s": v}


async def store(conn: asyncpg.Connection, contacts: Sequence[Facts]) -> None:
    await conn.execute(f"TRUNCATE {', '.join(f'{SCHEMA}.{t}' for t in TABLES)}")
    await conn.executemany(
        f"INSERT INTO {SCHEMA}.contacts VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        [
            (
                f.contact_id,
                f.created_at,
                sorted(f.tags),
                f.locale,
                f.time_zone,
                f.email_domain,
                json.dumps({k: _typed(v) for k, v in f.attributes.items()}),
                json.dumps(dict(f.consent)),
                sorted(f.suppressed),
                f.archived,
                f.erased,
                f.merged_into or None,
                f.bucket,
            )
            for f in contacts
        ],
    )
    await conn.executemany(
        f"INSERT INTO {SCHEMA}.orders VALUES ($1, $2, $2, $3, $4, $5, $6, $7)",
        [
            (o.order_id, f.contact_id, o.currency, o.total, o.refunded, o.place_time, o.cancelled)
            for f in contacts
            for o in f.orders
        ],
    )
    await conn.executemany(
        f"INSERT INTO {SCHEMA}.purchases VALUES ($1, $2, $3, $3, $4, $5)",
        [
            (p.order_id, p.sku, f.contact_id, p.quantity, p.time)
            for f in contacts
            for p in f.purchases
        ],
    )
    await conn.executemany(
        f"INSERT INTO {SCHEMA}.carts VALUES ($1, $2, $2, $3, $4)",
        [
            (c.cart_id, f.contact_id, c.abandoned_time, c.recovered)
            for f in contacts
            for c in f.carts
        ],
    )
    await conn.executemany(
        f"INSERT INTO {SCHEMA}.rfm_scores VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (f.contact_id, cur, s.recency, s.frequency, s.monetary, s.group)
            for f in contacts
            for cur, s in f.rfm.items()
        ],
    )
    await conn.executemany(
        f"INSERT INTO {SCHEMA}.memberships VALUES ($1, $2)",
        [(key, f.contact_id) for f in contacts for key in sorted(f.segments)],
    )


async def members(conn: asyncpg.Connection, rule: r.Rule, now: datetime) -> set[str]:
    sql, params = members_query(rule, now, schema=SCHEMA)
    return {str(row[0]) for row in await conn.fetch(sql, *params)}


AGREEMENT = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@AGREEMENT
@given(st.data())
async def test_sql_selects_whom_python_admits(
    conn: asyncpg.Connection, data: st.DataObject
) -> None:
    base = data.draw(st.sampled_from(BASES))
    contacts = [
        renumbered(f, i)
        for i, f in enumerate(data.draw(st.lists(facts(base), min_size=1, max_size=5)))
    ]
    await store(conn, contacts)
    for _ in range(3):
        rule = data.draw(rules(base, timely=data.draw(st.booleans())))
        for now in data.draw(st.lists(instants(base, 20), min_size=1, max_size=3)):
            expected = {f.contact_id for f in contacts if r.evaluate(rule, f, now)}
            assert await members(conn, rule, now) == expected, (r.format(rule), now)


NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


async def test_the_issue_examples_in_sql(conn: asyncpg.Connection) -> None:
    day = timedelta(days=1)
    loyal = Facts(
        _id(1, 1, 0),
        tags=frozenset({"vip"}),
        consent={"email": "subscribed"},
        time_zone="Europe/Berlin",
        attributes={"birthday": datetime(1990, 3, 5, tzinfo=UTC)},
        orders=tuple(
            OrderFact(_id(1, 2, j), "EUR", 1000, 0, NOW - j * 10 * day) for j in range(1, 4)
        ),
        purchases=(PurchaseFact(_id(1, 2, 1), "TEA-1", 1, NOW - 10 * day),),
        carts=(CartFact(_id(1, 3, 1), NOW - day),),
        segments=frozenset({"vip"}),
    )
    staff = replace(
        loyal,
        contact_id=_id(2, 1, 0),
        tags=frozenset({"staff"}),
        orders=(),
        purchases=(),
        carts=(),
        segments=frozenset(),
    )
    await store(conn, [loyal, staff])
    both = [loyal, staff]
    for text, who in [
        (
            "orders_count >= 3 AND last_order_at > -30d AND consent.email = 'subscribed' AND NOT tags CONTAINS 'staff'",
            [loyal],
        ),
        ("placed_order(count >= 2, within 90d)", [loyal]),
        ("purchased(sku = 'TEA-1', within 1y)", [loyal]),
        ("abandoned_cart(within 7d) AND NOT recovered", [loyal]),
        ("in_segment('vip')", [loyal]),
        ("anniversary(attributes.birthday) BETWEEN today AND +7d", [loyal, staff]),
        ("random_bucket(0, 100)", [loyal, staff]),
        ("NOT in_segment('vip')", [staff]),
    ]:
        rule = r.parse(text)
        assert await members(conn, rule, NOW) == {f.contact_id for f in who}, text
        assert {f.contact_id for f in both if r.evaluate(rule, f, NOW)} == {
            f.contact_id for f in who
        }


async def test_erased_and_merged_contacts_are_never_selected(conn: asyncpg.Connection) -> None:
    alive = Facts(_id(1, 1, 0))
    await store(
        conn,
        [
            alive,
            replace(alive, contact_id=_id(2, 1, 0), erased=True),
            replace(alive, contact_id=_id(3, 1, 0), merged_into=_id(1, 1, 0)),
        ],
    )
    assert await members(conn, r.parse("NOT archived"), NOW) == {alive.contact_id}


async def test_placeholders_can_start_anywhere(conn: asyncpg.Connection) -> None:
    await store(
        conn,
        [
            Facts(_id(1, 1, 0), locale="de", tags=frozenset({"vip"})),
            Facts(_id(2, 1, 0), locale="en"),
        ],
    )
    sql, params = compile_rule(
        r.parse("tags CONTAINS 'vip' AND created_at IS NOT SET AND locale IN ('de', 'fr')"),
        NOW,
        first=3,
        schema=SCHEMA,
    )
    assert "$1" not in sql and "$2" not in sql and "$3::timestamptz" in sql
    assert params[0] == NOW and params[1:] == ["vip", ["de", "fr"]]
    rows = await conn.fetch(
        f"SELECT c.contact_id FROM {SCHEMA}.contacts c WHERE c.locale <> $1 AND c.archived = $2 AND {sql}",
        "xx",
        False,
        *params,
    )
    assert [str(row[0]) for row in rows] == [_id(1, 1, 0)]
    with pytest.raises(ValueError):
        compile_rule(r.parse("archived"), NOW, schema='x"; DROP TABLE contacts; --')
    with pytest.raises(ValueError):
        compile_rule(r.parse("archived"), datetime(2026, 1, 1))


ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "America/Havana",
    "Asia/Beirut",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/Santiago",
)


async def test_local_midnight_is_resolved_as_postgresql_does(conn: asyncpg.Connection) -> None:
    """Python's day_start equals PostgreSQL's, also where clocks change at midnight (Sao Paulo
    until 2019, Havana, Beirut, Santiago skip or repeat midnight)."""
    days = [date(2010, 1, 1) + timedelta(days=n) for n in range(0, 366 * 12, 3)]
    rows = await conn.fetch(
        "SELECT z, d, (d::timestamp AT TIME ZONE z) AS s FROM unnest($1::text[]) z, unnest($2::date[]) d",
        list(ZONES),
        days,
    )
    wrong = [
        (row["z"], row["d"])
        for row in rows
        if clock.day_start(row["d"], clock.zone(row["z"])) != row["s"]
    ]
    assert wrong == []
