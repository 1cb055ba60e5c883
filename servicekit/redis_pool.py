"""Redis clients as the bot needs them: a blocking pool, short timeouts, one quick retry.

A process opens one client and shares it (the bot: sessions, queue and sending budgets); only a
separate tool such as `python -m bot dlq` opens its own.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


def redis_client(url: str, *, max_connections: int = 64, decode_responses: bool = False) -> aioredis.Redis:
    """A client whose pool waits (up to 2 s) for a free connection when all are busy.

    redis-py's default pool raises past its size instead, which turns a burst into 503s.
    One retry covers a connection Redis dropped (a restart, an idle timeout).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=2.0, decode_responses=decode_responses,
        socket_timeout=2.0, socket_connect_timeout=2.0, retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )
    return aioredis.Redis.from_pool(pool)
