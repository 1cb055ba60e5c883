"""Open the queue store the settings name: Redis Streams when REDIS_URL is set, else the SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bot.delivery.base import InboundQueue
from bot.settings import Settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis


def sqlite_path(settings: Settings) -> Path:
    return Path(settings.bot_data_dir) / "queue.sqlite3"


async def open_inbound_queue(
    settings: Settings, *, recover: bool = True, redis: aioredis.Redis | None = None
) -> InboundQueue:
    """The bot's queue; replicas share it through Redis, a single process keeps it in BOT_DATA_DIR.

    `recover=False` opens the SQLite file without voiding the leases of the bot that runs on it
    (the dlq tool works beside a running bot). Shared by the app and the dlq tool, so both always
    open the same store. `redis` is the process's shared client (the app's); without one the
    queue opens its own.
    """
    if settings.redis_url is not None:
        from bot.delivery.redis import RedisQueue

        redis_queue = (RedisQueue(redis, settings.dedup_ttl_seconds) if redis is not None
                       else RedisQueue.from_url(settings.redis_url.get_secret_value(), settings.dedup_ttl_seconds))
        await redis_queue.open()
        return redis_queue
    from bot.delivery.sqlite import SQLiteQueue

    sqlite_queue = SQLiteQueue(
        sqlite_path(settings), settings.dedup_ttl_seconds, min_free_bytes=settings.bot_data_min_free_bytes,
    )
    await sqlite_queue.open(recover=recover)
    return sqlite_queue
