"""Client addresses: network lists (allow-lists, trusted proxies) and the one way to find the real client."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(address: str) -> IPAddress | None:
    """The address, with an IPv4 peer seen through a dual-stack listener (::ffff:a.b.c.d) as plain IPv4."""
    try:
        ip: IPAddress = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def plain_address(address: str) -> str:
    """The address as logs should show it: an IPv4-mapped IPv6 address as plain IPv4; anything else unchanged."""
    ip = _parse(address)
    return address if ip is None else str(ip)


def address_in(address: str, networks: Iterable[IPNetwork]) -> bool:
    """Whether `address` lies in any of `networks`; an unparsable address lies in none.

    A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; they are matched as the IPv4 address.
    """
    ip = _parse(address)
    return ip is not None and any(ip in network for network in networks)


def client_address(peer: str, forwarded_for: str | None, trusted: Iterable[IPNetwork]) -> str:
    """The real client's address: the peer, or what the chain of trusted proxies in front of us saw.

    X-Forwarded-For is read from the right, the entry the nearest proxy added: each trusted hop
    vouches for the entry to its left, and the first address that is not a trusted proxy is the
    client (nginx's real_ip_recursive). Entries left of it are the client's own claims and are
    ignored; an entry that is not an address ends the walk at the hop that reported it. An
    IPv4 address seen through a dual-stack listener comes back as plain IPv4.
    """
    trusted = tuple(trusted)
    peer_ip = _parse(peer)
    if peer_ip is None:
        return peer
    if not forwarded_for or not any(peer_ip in network for network in trusted):
        return str(peer_ip)
    current = peer_ip
    for hop in reversed(forwarded_for.split(",")):
        ip = _parse(hop.strip())
        if ip is None:
            break
        current = ip
        if not any(ip in network for network in trusted):
            break
    return str(current)
