"""What long-connection tests read off a running bot: its readiness and its metrics."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.support.bots import metric


async def ready(base: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(base + "/ready") as resp:
        return resp.status, await resp.json()


async def sample(base: str, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as http:
        return await metric(http, base, name, **labels)
