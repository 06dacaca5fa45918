"""The token table: what it accepts, what it refuses (naming the line, never a hash), and how
a presented token is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.grpckit.auth import (
    AUDITOR,
    OPERATOR,
    SERVICE,
    TokenTable,
    TokenTableError,
    hash_token,
    parse_tokens,
    table_line,
)
from shared.runtime import api_tokens
from shared.settings import Settings

LINES = f"""
# the suite's services
orders     service   {hash_token("o")}
ops-alice  operator  {hash_token("a")}   # rotated: the old token still works until removed
ops-alice  operator  {hash_token("a2")}
audit.bob@example.com auditor {hash_token("b").upper()}
"""


def test_lines_and_json_give_the_same_table() -> None:
    lines = TokenTable(parse_tokens(LINES, "t"))
    rows = [
        {"name": "orders", "role": "service", "sha256": hash_token("o")},
        {"name": "ops-alice", "role": "operator", "sha256": hash_token("a")},
        {"name": "ops-alice", "role": "operator", "sha256": hash_token("a2")},
        {"name": "audit.bob@example.com", "role": "auditor", "sha256": hash_token("b")},
    ]
    assert TokenTable(parse_tokens(json.dumps(rows), "t")).tokens == lines.tokens
    found = {t: lines.authenticate(t) for t in ("o", "a", "a2", "b")}
    assert {t: (e.name, e.role) for t, e in found.items() if e} == {
        "o": ("orders", SERVICE),
        "a": ("ops-alice", OPERATOR),
        "a2": ("ops-alice", OPERATOR),
        "b": ("audit.bob@example.com", AUDITOR),
    }
    for wrong in ("", "O", "o ", hash_token("o")):  # the hash itself is not a token
        assert lines.authenticate(wrong) is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("orders service", "line 1: expected `name role sha256`"),
        (f"orders admin {hash_token('x')}", "line 1: role must be one of service, operator"),
        ("orders service abc", "line 1: sha256 must be 64 hex digits"),
        (f"\n-bad service {hash_token('x')}", "line 2: a name is"),
        (f'[{{"name": "o", "role": "service", "sha256": "{"z" * 64}"}}]', "entry 1: sha256"),
        ("[1]", "a JSON table is a list of objects"),
        ("[", "not valid JSON"),
    ],
)
def test_a_bad_table_is_refused_with_its_line(text: str, complaint: str) -> None:
    with pytest.raises(TokenTableError) as info:
        parse_tokens(text, "CRM_TOKENS")
    assert complaint in str(info.value)
    assert "CRM_TOKENS" in str(info.value)


def test_one_token_may_not_have_two_names() -> None:
    twice = f"{table_line('a', 'service', 't')}\n{table_line('b', 'auditor', 't')}"
    with pytest.raises(TokenTableError, match="listed twice"):
        TokenTable(parse_tokens(twice, "t"))


def test_the_table_comes_from_the_setting_and_the_file_together(tmp_path: Path) -> None:
    secret = tmp_path / "tokens"
    secret.write_text(table_line("ops", "operator", "from-file"))
    settings = Settings(
        crm_tokens=table_line("orders", "service", "from-env"), crm_tokens_file=str(secret)
    )
    table = TokenTable.of(settings)
    assert [t.name for t in table.tokens] == ["orders", "ops"]
    assert table.authenticate("from-file") is not None
    with pytest.raises(TokenTableError, match="CRM_TOKENS_FILE"):
        TokenTable.of(Settings(crm_tokens_file=str(tmp_path / "missing")))
    assert len(TokenTable.of(Settings())) == 0


def test_a_serve_role_will_not_start_without_a_table() -> None:
    with pytest.raises(SystemExit, match="no API tokens"):
        api_tokens(Settings())
    with pytest.raises(SystemExit, match="cannot be read"):
        api_tokens(Settings(crm_tokens="orders service nothex"))
    assert len(api_tokens(Settings(crm_tokens=table_line("o", "service", "t")))) == 1
