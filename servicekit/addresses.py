"""Client addresses against network lists (allow-lists, trusted proxies)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_in(address: str, networks: Iterable[IPNetwork]) -> bool:
    """Whether `address` lies in any of `networks`; an unparsable address lies in none.

    A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; they are matched as the IPv4 address.
    """
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
