"""`crm contacts import FILE.csv` against a real server (the CLI runs in its own thread)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from crm.contacts.v1 import contacts_pb2 as pb
from services.cli import app
from services.contacts.tests.conftest import Env
from shared.testing import tokens

GOOD = """email,external_id,first_name,tags,attributes.vip_level:number,attributes.member:bool
ada@shop.io,cust-1,Ada,vip;early,3,yes
grace@shop.io,cust-2,Grace,,1.5,no
"""


async def invoke(*args: str, token: str = tokens.TOKENS["operator"]) -> tuple[int, str]:
    env = {"CRM_TOKEN": token}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, result.output


async def test_import_csv_then_rerun_changes_nothing(env: Env, tmp_path: Path) -> None:
    f = tmp_path / "contacts.csv"
    f.write_text(GOOD)
    code, out = await invoke("contacts", "import", str(f), "--target", env.target)
    assert code == 0, out
    await env.settle()
    c = (await env.stub.FindContact(pb.FindContactRequest(external_id="cust-1"))).contact
    assert (c.email, c.first_name, list(c.tags)) == ("ada@shop.io", "Ada", ["vip", "early"])
    assert c.attributes["vip_level"].number_value == 3 and c.attributes["member"].bool_value
    events = await env.event_count()
    code, out = await invoke("contacts", "import", str(f), "--target", env.target)
    assert code == 0 and await env.event_count() == events, out


async def test_unknown_columns_stop_before_anything_is_sent(env: Env, tmp_path: Path) -> None:
    for header, message in [
        ("email,favourite_colour\n", "unknown column 'favourite_colour'"),
        ("email,email\n", "appears twice"),
        ("first_name\n", "needs an email, phone or external_id"),
        ("email,attributes.x:money\n", "type must be one of"),
    ]:
        f = tmp_path / "bad.csv"
        f.write_text(header + "a@shop.io,x\n")
        code, out = await invoke("contacts", "import", str(f), "--target", env.target)
        assert code == 2 and message in " ".join(out.split()), out
    assert await env.event_count() == 0


async def test_malformed_rows_are_reported_by_line_and_the_rest_imported(
    env: Env, tmp_path: Path
) -> None:
    f = tmp_path / "mixed.csv"
    f.write_text(
        "email,first_name,attributes.age:number\n"
        "ok1@shop.io,One,30\n"
        "too,many,fields,here\n"
        "bad-email,Two,40\n"
        "ok2@shop.io,Three,old\n"
        "ok3@shop.io,Four,50\n"
    )
    code, out = await invoke("contacts", "import", str(f), "--target", env.target)
    assert code == 1
    text = " ".join(out.split())
    assert "MALFORMED_ROW" in text and "INVALID_EMAIL" in text and "INVALID_ATTRIBUTE" in text
    await env.settle()
    for email in ("ok1@shop.io", "ok3@shop.io"):
        await env.stub.FindContact(pb.FindContactRequest(email=email))
    assert await env.store.pool.fetchval("SELECT count(*) FROM contacts_rm.contacts") == 2


async def test_the_import_needs_a_token_that_may_write(env: Env, tmp_path: Path) -> None:
    f = tmp_path / "contacts.csv"
    f.write_text(GOOD)
    code, out = await invoke("contacts", "import", str(f), "--target", env.target, token="")
    assert code == 2 and "a token is required" in " ".join(out.split()), out
    code, out = await invoke(
        "contacts", "import", str(f), "--target", env.target, token=tokens.TOKENS["auditor"]
    )
    assert code == 3 and "PERMISSION_DENIED" in out, out
    code, out = await invoke("contacts", "import", str(f), "--target", env.target, token="nope")
    assert code == 3 and "UNAUTHENTICATED" in out, out
    assert await env.event_count() == 0
    # --token wins over CRM_TOKEN; the events say who imported them.
    code, out = await invoke(
        "contacts",
        "import",
        str(f),
        "--target",
        env.target,
        "--token",
        tokens.TOKENS["operator"],
        token="nope",
    )
    assert code == 0, out
    events = await env.store.read_all(0, categories=["contact"])
    assert {e.metadata.get("principal") for e in events.events} == {tokens.NAMES["operator"]}
    assert {e.metadata.get("role") for e in events.events} == {"operator"}
