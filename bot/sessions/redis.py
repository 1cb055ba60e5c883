"""Session storage in Redis (`SET session:<platform>:<user> … EX ttl`, i.e. SETEX), shared by every replica."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot.errors import DependencyUnavailable
from bot.messages import Turn
from bot.sessions.base import decode_turns, encode_turns


class RedisSessionStore:
    """Sessions as JSON strings with a TTL, so any replica can continue a conversation."""

    def __init__(self, client: aioredis.Redis, ttl: int, prefix: str = "session:") -> None:
        self._redis = client
        self.ttl = ttl
        self.prefix = prefix

    async def load(self, key: str) -> list[Turn]:
        try:
            raw = await self._redis.get(self.prefix + key)
        except RedisError as exc:
            raise DependencyUnavailable("session store (redis) unavailable") from exc
        return decode_turns(raw)

    async def save(self, key: str, turns: Sequence[Turn]) -> None:
        try:
            await self._redis.set(self.prefix + key, encode_turns(turns), ex=self.ttl)
        except RedisError as exc:
            raise DependencyUnavailable("session store (redis) unavailable") from exc

    async def check(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis unavailable") from exc
