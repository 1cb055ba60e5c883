"""Access tokens for platform APIs: cached, refreshed before expiry, fetched once under concurrency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Fetch = Callable[[], Awaitable[tuple[str, float]]]  # -> (token, lifetime in seconds)


class TokenCache:
    """Holds one token; `refresh_margin` seconds before expiry the next caller fetches a new one."""

    def __init__(self, fetch: Fetch, refresh_margin: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._token is not None and self._clock() < self._expires_at - self.refresh_margin:
            return self._token
        async with self._lock:
            # Another caller may have refreshed while we waited for the lock.
            if self._token is not None and self._clock() < self._expires_at - self.refresh_margin:
                return self._token
            token, lifetime = await self._fetch()
            self._token, self._expires_at = token, self._clock() + float(lifetime)
            return token

    def invalidate(self) -> None:
        """Forget the token (the API said it is no longer valid)."""
        self._token = None
        self._expires_at = 0.0
