"""With REDIS_URL the bot opens one Redis connection pool, which sessions, the queue and the sending budgets share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from bot.app import create_app
from bot.delivery.base import InboundQueue
from bot.delivery.shaping import OutboundShaper
from bot.keys import queue_key, redis_key, sessions_key, workers_key
from bot.messages import Turn
from bot.platforms.base import OutboundLimit
from bot.settings import load_settings


def client_list(url: str) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return [c for c in client.client_list() if c.get("cmd") != "client|list"]
    finally:
        client.close()


async def test_sessions_queue_and_budgets_share_the_one_pool(
    aiohttp_client: Any, registry: CollectorRegistry, redis_url: str, tmp_path: Path
) -> None:
    app = create_app(load_settings({"REDIS_URL": redis_url, "BOT_DATA_DIR": str(tmp_path)}), registry=registry)
    client = await aiohttp_client(app)
    shared: aioredis.Redis = app[redis_key]
    sessions, queue = app[sessions_key], app[queue_key]
    shaper = app[workers_key].shaper
    assert isinstance(queue, InboundQueue) and isinstance(shaper, OutboundShaper)

    # Each part works on it: a session round-trips, the queue answers, a budget is taken.
    await sessions.save("p:alice", [Turn("user", "hi"), Turn("assistant", "hello")])
    assert await sessions.load("p:alice") == [Turn("user", "hi"), Turn("assistant", "hello")]
    await queue.check()
    assert await shaper.acquire([OutboundLimit("test:robot", "2/minute")]) == 0
    assert await shaper.acquire([OutboundLimit("test:robot", "2/minute")]) == 0
    assert await shaper.acquire([OutboundLimit("test:robot", "2/minute")]) > 0, "the third send waits"

    pool = shared.connection_pool
    in_use_or_idle = len(pool._available_connections) + len(pool._in_use_connections)  # type: ignore[attr-defined]
    assert in_use_or_idle >= 1
    assert len(client_list(redis_url)) == in_use_or_idle, "every connection the bot holds is in the one pool"
    assert (await client.get("/ready")).status == 200
