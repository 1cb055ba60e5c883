"""In-process session storage with a time-to-live and a size cap (least recently used goes)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from bot.messages import Turn


class MemorySessionStore:
    """Sessions in a dict: the embedded default, lost on restart, per process."""

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, tuple[Turn, ...]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    async def load(self, key: str) -> list[Turn]:
        item = self._items.get(key)
        if item is None:
            return []
        expires_at, turns = item
        if expires_at <= self._clock():
            del self._items[key]
            return []
        return list(turns)

    async def save(self, key: str, turns: Sequence[Turn]) -> None:
        self._items[key] = (self._clock() + self.ttl, tuple(turns))
        self._items.move_to_end(key)
        self._evict()

    def _evict(self) -> None:
        """Drop expired entries from the old end, then the least recently saved past the cap."""
        now = self._clock()
        while self._items:
            oldest_key, (expires_at, _) = next(iter(self._items.items()))
            if expires_at > now and len(self._items) <= self.max_entries:
                break
            del self._items[oldest_key]

    async def check(self) -> None:
        return None
