"""Enforce the rate-limit rules with `limits`: in memory without awaiting, or shared through Redis."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import strategies
from limits.storage import MemoryStorage

from sidecar.credentials import ApiKeys
from sidecar.metrics import SidecarMetrics
from sidecar.routes import Route
from sidecar.rules import Rule

log = logging.getLogger("sidecar.ratelimit")
# After a Redis failure, skip it this long: a dead Redis must not add its timeout to every request.
_REDIS_BACKOFF = 1.0
# Storage keys remembered per (rule, client); past this many the cache starts over.
_MAX_CACHED_KEYS = 50_000


def loop_memory_storage() -> MemoryStorage:
    """`limits`' MemoryStorage without its expiry thread; call `expire_memory` from the event loop instead.

    Under traffic the stock storage starts a new threading.Timer every 10 ms, and each one
    takes the GIL from the event loop. Counters expire lazily on read anyway, so a sweep once
    a second only trims moving-window entries and frees keys nobody uses any more. (Not a
    subclass: `limits` wraps the storage methods again for every subclass.)
    """
    storage = MemoryStorage()
    storage.timer.cancel()
    storage._MemoryStorage__schedule_expiry = lambda: None  # type: ignore[attr-defined]  # the private hook
    return storage


def expire_memory(storage: MemoryStorage) -> None:
    storage._MemoryStorage__expire_events()  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request was refused, in the terms of the RateLimit header fields."""

    rule: str
    limit: int
    remaining: int
    reset: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        reset = str(self.reset).encode()
        return [
            (b"Retry-After", reset),
            (b"RateLimit-Limit", str(self.limit).encode()),
            (b"RateLimit-Remaining", str(self.remaining).encode()),
            (b"RateLimit-Reset", reset),
        ]


class RateLimiter:
    """Apply every rule matching a request's route; the first enforced rule that is out of budget wins.

    With the in-memory storage `check` is synchronous and never awaits, so the proxy calls it
    inline; with Redis (`is_async`) the proxy awaits `check_async` instead. A shadow rule is
    counted when it would refuse, and never refuses.
    """

    def __init__(
        self,
        rules: tuple[Rule, ...],
        metrics: SidecarMetrics,
        *,
        redis_url: str | None = None,
        redis_timeout: float = 0.25,
        api_keys: ApiKeys | None = None,
    ) -> None:
        self.rules = rules
        self.api_keys = api_keys or ApiKeys(frozenset())
        self.is_async = redis_url is not None
        self._by_route: dict[str, tuple[Rule, ...]] = {}
        self._keys: dict[tuple[str, str], tuple[str, ...]] = {}
        self._metrics = metrics
        self._skip_until = 0.0
        self._storage: Any
        if redis_url is None:
            self._storage = loop_memory_storage()
            self._limiters: dict[str, Any] = {
                "moving-window": strategies.MovingWindowRateLimiter(self._storage),
                "fixed-window": strategies.FixedWindowRateLimiter(self._storage),
            }
        else:
            from limits.aio import strategies as aio_strategies
            from limits.aio.storage import RedisStorage

            self._storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", key_prefix="botwatch-sidecar",
                socket_timeout=redis_timeout, socket_connect_timeout=redis_timeout,
            )
            self._limiters = {
                "moving-window": aio_strategies.MovingWindowRateLimiter(self._storage),
                "fixed-window": aio_strategies.FixedWindowRateLimiter(self._storage),
            }

    def rules_for(self, route: Route) -> tuple[Rule, ...]:
        rules = self._by_route.get(route.label)
        if rules is None:
            rules = self._by_route[route.label] = tuple(rule for rule in self.rules if rule.applies_to(route))
        return rules

    def check(self, route: Route, client_ip: str, credential: bytes | None, upstream: str) -> Rejection | None:
        """Count the request against every matching rule held in memory.

        This does what the strategies' `hit` does (`incr` for a fixed window, `acquire_entry`
        for a moving one) with storage keys built once per client instead of on every request.
        """
        rules = self._by_route.get(route.label)
        if rules is None:
            rules = self.rules_for(route)
        storage = self._storage
        for rule in rules:
            ident = client_ip if rule.key == "client_ip" else _key(rule, route, client_ip, credential, self.api_keys)
            keys = self._keys.get((rule.name, ident)) or self._storage_keys(rule, ident)
            fixed = rule.strategy == "fixed-window"
            for item, key in zip(rule.items, keys):
                if fixed:
                    allowed = storage.incr(key, item.get_expiry()) <= item.amount
                else:
                    allowed = storage.acquire_entry(key, item.amount, item.get_expiry())
                if allowed:
                    continue
                reset_at, remaining = self._limiters[rule.strategy].get_window_stats(item, rule.name, ident)
                rejection = self._refuse(rule, item.amount, remaining, reset_at, upstream)
                if rejection is not None:
                    return rejection
                break
        return None

    def _storage_keys(self, rule: Rule, ident: str) -> tuple[str, ...]:
        if len(self._keys) >= _MAX_CACHED_KEYS:
            self._keys.clear()
        keys = self._keys[(rule.name, ident)] = tuple(item.key_for(rule.name, ident) for item in rule.items)
        return keys

    async def check_async(self, route: Route, client_ip: str, credential: bytes | None, upstream: str) -> Rejection | None:
        """Count the request against every matching rule held in Redis; fail open if Redis fails."""
        rules = self.rules_for(route)
        if not rules or time.monotonic() < self._skip_until:
            return None
        try:
            for rule in rules:
                limiter = self._limiters[rule.strategy]
                ids = (rule.name, _key(rule, route, client_ip, credential, self.api_keys))
                for item in rule.items:
                    if await limiter.hit(item, *ids):
                        continue
                    reset_at, remaining = await limiter.get_window_stats(item, *ids)
                    rejection = self._refuse(rule, item.amount, remaining, reset_at, upstream)
                    if rejection is not None:
                        return rejection
                    break
        except Exception as exc:  # noqa: BLE001 - any storage failure means: let traffic through
            self._metrics.bound(self._metrics.ratelimit_errors, upstream).inc()
            if time.monotonic() >= self._skip_until:
                log.warning("rate-limit storage failed, failing open: %s", type(exc).__name__)
            self._skip_until = time.monotonic() + _REDIS_BACKOFF
        return None

    def _refuse(self, rule: Rule, limit: int, remaining: int, reset_at: float, upstream: str) -> Rejection | None:
        metrics = self._metrics
        if rule.shadow:
            metrics.bound(metrics.ratelimit_shadow, rule.name, upstream).inc()
            return None
        metrics.bound(metrics.ratelimited, rule.name, upstream).inc()
        reset = max(1, math.ceil(reset_at - time.time()))
        return Rejection(rule.name, limit, max(0, remaining), reset)

    def expire(self) -> None:
        """Drop expired in-memory entries (call about once a second)."""
        if not self.is_async:
            expire_memory(self._storage)

    async def close(self) -> None:
        if self.is_async:
            bridge = getattr(self._storage, "bridge", None)
            client = getattr(bridge, "storage", None)
            if client is not None:
                await client.aclose()


def _key(rule: Rule, route: Route, client_ip: str, credential: bytes | None, api_keys: ApiKeys) -> str:
    kind = rule.key
    if kind == "client_ip":
        return client_ip
    if kind == "api_key":
        # Only a key the bot would accept earns its own budget; anything else is the address's.
        key = api_keys.identify(credential) if credential else None
        return key or "ip:" + client_ip
    if kind == "route":
        return route.label
    return route.platform
