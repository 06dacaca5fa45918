"""The reads of notifications_reports (reports_readmodel.py): the rows of a group of messages
(a flow's, by step; a campaign's, by variant; a template's sent through SendMessage) with their
total, and the days of their activity. They follow the log by the projection's lag."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from services.notifications.adapters.reports_readmodel import SCHEMA


@dataclass(frozen=True)
class Selector:
    """What selects a report's messages, and the column that splits them into rows (None: no
    rows, the total only)."""

    where: str
    key: str | None


FLOW = Selector("flow_id = $1", "step_id")
CAMPAIGN = Selector("campaign_id = $1", "variant")
TEMPLATE = Selector("template_id = $1 AND source = 'api'", None)
DELIVERED = "send_time IS NOT NULL AND (delivered OR NOT (bounced OR failed))"


@dataclass
class Row:
    group: str  # the step or the variant; "" in a total
    messages: int = 0  # every message of the group, sent or not
    recipients: int = 0
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    opens: int = 0
    clicks: int = 0
    unsubscribes: int = 0
    conversions: int = 0
    converted: int = 0
    revenue: dict[str, int] = field(default_factory=dict)  # currency -> minor units


@dataclass
class Day:
    start: datetime
    sent: int = 0
    opens: int = 0
    clicks: int = 0
    conversions: int = 0
    revenue: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    rows: list[Row]
    total: Row
    days: list[Day]
    window: timedelta
    touch: str


def _rows_sql(where: str, key: str) -> str:
    return f"""
WITH m AS (SELECT * FROM {SCHEMA}.messages WHERE {where}),
     c AS (SELECT c.message_id, count(*) AS n
           FROM {SCHEMA}.conversions c JOIN m USING (message_id) GROUP BY c.message_id)
SELECT {key} AS grp, grouping({key}) = 1 AS total, count(*) AS messages,
       count(DISTINCT contact_id) FILTER (WHERE send_time IS NOT NULL) AS recipients,
       count(*) FILTER (WHERE send_time IS NOT NULL) AS sent,
       count(*) FILTER (WHERE {DELIVERED}) AS delivered,
       count(*) FILTER (WHERE bounced) AS bounced,
       count(*) FILTER (WHERE open_time IS NOT NULL) AS opens,
       count(*) FILTER (WHERE click_time IS NOT NULL) AS clicks,
       count(*) FILTER (WHERE unsubscribe_time IS NOT NULL) AS unsubscribes,
       coalesce(sum(c.n), 0)::bigint AS conversions,
       count(c.n) AS converted
FROM m LEFT JOIN c USING (message_id)
GROUP BY GROUPING SETS (({key}), ())
ORDER BY 2, 1
"""


def _revenue_sql(where: str, key: str) -> str:
    return f"""
SELECT {key} AS grp, grouping({key}) = 1 AS total, c.currency, sum(c.amount_minor) AS amount
FROM {SCHEMA}.conversions c JOIN {SCHEMA}.messages m USING (message_id)
WHERE {where}
GROUP BY GROUPING SETS (({key}, c.currency), (c.currency))
ORDER BY 3
"""


def _days_sql(where: str) -> str:
    """Per UTC day within [$2, $3) (NULL: unbounded): first sends, opens, clicks; conversions
    and revenue."""
    day = "date_trunc('day', {} AT TIME ZONE 'UTC')"
    within = (
        "{0} IS NOT NULL AND ({0} >= $2 OR $2::timestamptz IS NULL)"
        " AND ({0} < $3 OR $3::timestamptz IS NULL)"
    )
    parts = [
        f"""SELECT {day.format(col)} AS day, '{name}' AS what, '' AS currency, count(*) AS n
            FROM {SCHEMA}.messages WHERE {where} AND {within.format(col)} GROUP BY 1"""
        for name, col in (("sent", "send_time"), ("opens", "open_time"), ("clicks", "click_time"))
    ]
    parts.append(
        f"""SELECT {day.format("c.order_time")}, 'conversions', c.currency, count(*)
            FROM {SCHEMA}.conversions c JOIN {SCHEMA}.messages m USING (message_id)
            WHERE {where} AND {within.format("c.order_time")} GROUP BY 1, 3"""
    )
    parts.append(
        f"""SELECT {day.format("c.order_time")}, 'revenue', c.currency, sum(c.amount_minor)
            FROM {SCHEMA}.conversions c JOIN {SCHEMA}.messages m USING (message_id)
            WHERE {where} AND {within.format("c.order_time")} GROUP BY 1, 3"""
    )
    return " UNION ALL ".join(parts) + " ORDER BY 1, 2, 3"


def _row(r: asyncpg.Record) -> Row:
    return Row(
        group="" if r["total"] else str(r["grp"]),
        messages=r["messages"],
        recipients=r["recipients"],
        sent=r["sent"],
        delivered=r["delivered"],
        bounced=r["bounced"],
        opens=r["opens"],
        clicks=r["clicks"],
        unsubscribes=r["unsubscribes"],
        conversions=r["conversions"],
        converted=r["converted"],
    )


class ReportQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def report(
        self,
        selector: Selector,
        value: str,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Report:
        """The report of the messages ``selector`` (FLOW, CAMPAIGN, TEMPLATE) picks with
        ``value``; its days from ``since`` to ``until`` (either None: unbounded)."""
        where, key = selector.where, selector.key or "source"  # one source: one row
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = [_row(r) for r in await conn.fetch(_rows_sql(where, key), value)]
            total = rows.pop()  # the grouping set () sorts last
            by_group = {r.group: r for r in rows}
            for r in await conn.fetch(_revenue_sql(where, key), value):
                row = total if r["total"] else by_group[str(r["grp"])]
                row.revenue[r["currency"]] = int(r["amount"])
            days: dict[datetime, Day] = {}
            for r in await conn.fetch(_days_sql(where), value, since, until):
                start = r["day"].replace(tzinfo=UTC)
                day = days.setdefault(start, Day(start))
                if r["what"] == "revenue":
                    day.revenue[r["currency"]] = int(r["n"])
                elif r["what"] == "conversions":
                    day.conversions += int(r["n"])
                else:
                    setattr(day, r["what"], int(r["n"]))
            rule = await conn.fetchrow(f"SELECT window_seconds, touch FROM {SCHEMA}.rule")
        return Report(
            rows=rows if selector.key else [],
            total=total,
            days=list(days.values()),
            window=timedelta(seconds=rule["window_seconds"]),
            touch=rule["touch"],
        )
