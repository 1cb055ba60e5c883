"""The client's address for a request, resolved once from the trusted proxies (BOT_TRUSTED_PROXIES)."""

from __future__ import annotations

from aiohttp import web

from bot.keys import client_ip_key, settings_key
from servicekit.addresses import client_address


def client_ip(request: web.Request) -> str:
    """The real client's address, the same for every log line, span and check of this request.

    Behind the sidecar the peer is the sidecar; X-Forwarded-For is believed only as far as trusted
    proxies vouch for it (servicekit.addresses.client_address, the algorithm the sidecar uses).
    """
    address = request.get(client_ip_key)
    if address is None:
        trusted = request.app[settings_key].bot_trusted_proxies
        address = client_address(request.remote or "", request.headers.get("X-Forwarded-For"), trusted)
        request[client_ip_key] = address
    return address
