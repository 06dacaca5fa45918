"""Page tokens are signed with the deployment's key and bound to their query."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.domain import paging
from shared.domain.errors import Invalid


@pytest.fixture(autouse=True)
def dev_secret() -> Iterator[None]:
    yield
    paging.use_secret(paging.DEV_SECRET)


def test_a_token_reads_back_for_its_query_only() -> None:
    token = paging.encode_token(["2026-12-02", "id-9"], "orders|contact=1")
    assert paging.decode_token(token, "orders|contact=1") == ["2026-12-02", "id-9"]
    with pytest.raises(Invalid):
        paging.decode_token(token, "orders|contact=2")


def test_a_token_signed_with_another_key_is_refused() -> None:
    paging.use_secret("replica-a-and-b")
    token = paging.encode_token(42, "q")
    assert paging.decode_token(token, "q") == 42  # another replica with the same key
    paging.use_secret("another-deployment")
    with pytest.raises(Invalid) as info:
        paging.decode_token(token, "q")
    assert info.value.violations[0][1] == "INVALID_PAGE_TOKEN"


def test_an_edited_token_is_refused() -> None:
    token = paging.encode_token(1, "q")
    payload, mac = token.split(".")
    with pytest.raises(Invalid):
        paging.decode_token(payload[:-2] + "AA." + mac, "q")
