"""Outbound shaping: hold a reply back until every platform budget it draws on has room."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from bot.platforms.base import OutboundLimit

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("bot.delivery")

# While the budget store does not answer, replies wait this long and ask again: sending
# without knowing the budget could get a DingTalk robot throttled for ten minutes.
STORE_DOWN_DELAY = 1.0
# A reply comes back this long after its slot frees, so it does not race the slot's own expiry.
_SLACK = 0.01
_SWEEP_EVERY = 10.0


class LoopMemoryStorage(MemoryStorage):
    """`limits`' async MemoryStorage, swept by the shaper instead of by a task per call.

    The stock storage schedules an expiry task on every hit, and that task hands each key to a
    thread; with one key per chat that is thousands of thread hops per second under load.
    """

    async def _MemoryStorage__schedule_expiry(self) -> None:  # the base class's private hook, name-mangled
        return None

    def sweep(self, now: float) -> None:
        """Drop the entries whose window has passed, and the keys left empty."""
        for key in list(self.events):
            # Newest first, one window length per key: the expired ones are a tail.
            entries = self.events[key]
            kept = next((i for i, entry in enumerate(entries) if entry.expiry <= now), len(entries))
            if kept:
                del entries[kept:]
            else:
                del self.events[key]
                self.locks.pop(key, None)


@lru_cache(maxsize=256)
def _items(rate: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(rate))


class OutboundShaper:
    """Moving-window budgets per key: in memory for one process, in Redis for replicas that share them.

    A moving window is what the platforms count (DingTalk: 20 in any minute), so a reply never
    goes out while the last `n` sends fall within the window, whatever their phase.
    """

    def __init__(self, storage: Storage, *, close: Callable[[], Awaitable[Any]] | None = None) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._close = close
        self._swept = time.monotonic()
        self._store_down = False

    @classmethod
    def in_memory(cls) -> OutboundShaper:
        return cls(LoopMemoryStorage())

    @classmethod
    def in_redis(cls, url: str, client: aioredis.Redis | None = None) -> OutboundShaper:
        """Budgets every replica pointed at this Redis draws on together, on `client`'s pool when given."""
        from servicekit.redis_pool import redis_client

        owned = client is None
        client = client if client is not None else redis_client(url)
        storage = RedisStorage(
            "async+" + url, implementation="redispy", key_prefix="botwatch-outbound", wrap_exceptions=True,
            connection_pool=client.connection_pool,  # type: ignore[arg-type]  # limits types options as scalars
        )
        return cls(storage, close=client.aclose if owned else None)

    async def acquire(self, limits: Sequence[OutboundLimit]) -> float:
        """Take one slot in every budget and return 0, or return the seconds until the fullest has room.

        Nothing is taken while a budget is full. Two workers racing for the last slot can both pass
        the check; the loser's hit fails and it waits, so the race costs at most a slot taken and
        not used: a reply may go later than it could, never earlier.
        """
        if not limits:
            return 0.0
        try:
            wait = await self._wait(limits) or await self._take(limits)
        except (StorageError, OSError) as exc:
            self._store_state(down=True, reason=type(exc).__name__)
            return STORE_DOWN_DELAY
        self._store_state(down=False)
        self._sweep()
        return wait

    async def _wait(self, limits: Sequence[OutboundLimit]) -> float:
        wait = 0.0
        for key, rate in limits:
            for item in _items(rate):
                if not await self._limiter.test(item, key):
                    wait = max(wait, await self._until_free(item, key))
        return wait

    async def _take(self, limits: Sequence[OutboundLimit]) -> float:
        for key, rate in limits:
            for item in _items(rate):
                if not await self._limiter.hit(item, key):
                    return await self._until_free(item, key)
        return 0.0

    async def _until_free(self, item: RateLimitItem, key: str) -> float:
        reset_at, _remaining = await self._limiter.get_window_stats(item, key)
        # `limits` stamps its entries with time.time().
        return max(_SLACK, reset_at - time.time() + _SLACK)

    def _sweep(self) -> None:
        if isinstance(self._storage, LoopMemoryStorage) and time.monotonic() - self._swept >= _SWEEP_EVERY:
            self._swept = time.monotonic()
            self._storage.sweep(time.time())

    def _store_state(self, *, down: bool, reason: str = "") -> None:
        # Logged on change only: every reply asks, and an outage would otherwise flood the logs.
        if down == self._store_down:
            return
        self._store_down = down
        if down:
            log.warning("outbound budget store unavailable, replies wait: %s", reason)
        else:
            log.info("outbound budget store available again")

    async def close(self) -> None:
        if self._close is not None:
            await self._close()
