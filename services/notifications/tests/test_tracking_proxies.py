"""The unsubscribe evidence's IP address behind trusted proxies (TRUSTED_PROXIES): the peer's,
or the nearest X-Forwarded-For entry the trusted proxies did not add."""

from __future__ import annotations

import pytest

from services.notifications.adapters.tracking_http import client_address, trusted_networks


@pytest.mark.parametrize(
    "peer,forwarded,trusted,client",
    [
        ("203.0.113.5", ["198.51.100.7"], "", "203.0.113.5"),  # nobody trusted: the peer
        ("10.0.0.2", ["198.51.100.7"], "10.0.0.0/8", "198.51.100.7"),
        ("10.0.0.2", ["1.2.3.4, 198.51.100.7, 10.0.0.9"], "10.0.0.0/8", "198.51.100.7"),
        ("10.0.0.2", ["1.2.3.4", "198.51.100.7"], "10.0.0.0/8", "198.51.100.7"),  # two headers
        ("10.0.0.2", ["junk, 10.0.0.9"], "10.0.0.0/8", "10.0.0.9"),  # malformed: stop there
        ("10.0.0.2", [], "10.0.0.0/8", "10.0.0.2"),
        ("203.0.113.5", ["10.0.0.9"], "10.0.0.0/8", "203.0.113.5"),  # untrusted peer's header
        ("::1", ["2001:db8::7"], "::1", "2001:db8::7"),
    ],
)
def test_the_client_address_behind_trusted_proxies(
    peer: str, forwarded: list[str], trusted: str, client: str
) -> None:
    assert client_address(peer, forwarded, trusted_networks(trusted)) == client


def test_trusted_proxies_must_be_addresses() -> None:
    with pytest.raises(ValueError):
        trusted_networks("10.0.0.0/8, not-an-address")
