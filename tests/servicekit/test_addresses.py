"""Who the client is: the peer, or what a chain of trusted proxies says it saw (bot and sidecar alike)."""

from __future__ import annotations

import ipaddress

import pytest

from servicekit.addresses import address_in, client_address, plain_address

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
LOOPBACK_AND_LB = (*LOOPBACK, ipaddress.ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "client"),
    [
        ("203.0.113.9", None, LOOPBACK, "203.0.113.9"),
        # An untrusted peer cannot pick its address.
        ("203.0.113.9", "198.51.100.1", LOOPBACK, "203.0.113.9"),
        # One trusted proxy in front: the entry it added.
        ("127.0.0.1", "198.51.100.1", LOOPBACK, "198.51.100.1"),
        # What the client claimed before reaching the proxy is ignored.
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", LOOPBACK, "198.51.100.1"),
        # A chain of trusted proxies (load balancer 10.x, then the sidecar on loopback).
        ("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3", LOOPBACK_AND_LB, "198.51.100.1"),
        # Only trusted hops: the furthest one any of them vouched for.
        ("127.0.0.1", "10.1.2.3, 10.4.5.6", LOOPBACK_AND_LB, "10.1.2.3"),
        # Garbage ends the walk at the hop that reported it.
        ("127.0.0.1", "198.51.100.1, not-an-ip", LOOPBACK, "127.0.0.1"),
        ("127.0.0.1", "not-an-ip, 10.1.2.3", LOOPBACK_AND_LB, "10.1.2.3"),
        ("127.0.0.1", " , ", LOOPBACK, "127.0.0.1"),
        # A dual-stack listener shows IPv4 peers as IPv4-mapped IPv6: trusted, and reported as IPv4.
        ("::ffff:127.0.0.1", "198.51.100.1", LOOPBACK, "198.51.100.1"),
        ("::ffff:203.0.113.9", None, LOOPBACK, "203.0.113.9"),
        ("127.0.0.1", "::ffff:198.51.100.1", LOOPBACK, "198.51.100.1"),
        ("::1", "2001:db8::7", LOOPBACK, "2001:db8::7"),
        # aiohttp reports no peer for a unix socket.
        ("", "198.51.100.1", LOOPBACK, ""),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    peer: str, forwarded_for: str | None, trusted: tuple[ipaddress.IPv4Network, ...], client: str
) -> None:
    assert client_address(peer, forwarded_for, trusted) == client


def test_an_address_is_matched_against_networks_as_plain_ipv4_when_mapped() -> None:
    assert address_in("::ffff:127.0.0.1", LOOPBACK)
    assert not address_in("::ffff:203.0.113.9", LOOPBACK)
    assert not address_in("not-an-ip", LOOPBACK)


def test_a_peer_is_shown_as_plain_ipv4_when_mapped() -> None:
    assert plain_address("::ffff:203.0.113.9") == "203.0.113.9"
    assert plain_address("2001:db8::7") == "2001:db8::7"
    assert plain_address("") == ""
