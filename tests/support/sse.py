"""A minimal server-sent events reader for tests, written from the WHATWG format, not the bot's parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson


async def events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """Yield (event name, parsed JSON data) for each event, as soon as its blank line arrives."""
    name, data = "message", []
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield name, orjson.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


async def all_events(resp: aiohttp.ClientResponse) -> list[tuple[str, Any]]:
    return [event async for event in events(resp)]
