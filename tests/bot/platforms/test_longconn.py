"""The connection supervisor: one attempt at a time, exponential backoff with jitter, a breaker, a watchdog."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from bot.errors import DependencyUnavailable
from bot.platforms.longconn import (
    ConnectionRefused,
    ConnectionUnavailable,
    Ended,
    Link,
    LongConnection,
    LongConnectionSettings,
    ReconnectPolicy,
    State,
)
from bot.telemetry.metrics import BotMetrics


def settings(**values: float) -> LongConnectionSettings:
    base = {"reconnect_base_seconds": 0.01, "reconnect_max_seconds": 0.02, "silence_seconds": 0.3,
            "breaker_failures": 3, "breaker_seconds": 0.5}
    return LongConnectionSettings(**{**base, **values})


def metrics() -> BotMetrics:
    return BotMetrics(CollectorRegistry(), default_collectors=False)


def value(m: BotMetrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


async def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    policy = ReconnectPolicy(base=1.0, ceiling=8.0, breaker_failures=5, breaker_seconds=60)
    for failures, step in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0)]:
        delays = [policy.delay(failures) for _ in range(200)]
        assert step * 0.5 <= min(delays) and max(delays) <= step
        assert max(delays) - min(delays) > step * 0.2  # jittered, so replicas spread out
    policy.first_jitter = 30.0
    assert all(0 <= policy.delay(0) <= 30.0 for _ in range(50))


async def test_failures_in_a_row_open_the_breaker_which_bounds_attempts() -> None:
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def unreachable(link: Link, up: Callable[[], None]) -> Ended:
        attempts.append(loop.time())
        raise ConnectionUnavailable("connection refused by the network")

    m = metrics()
    conn = LongConnection("demo", unreachable, settings(), metrics=m)
    conn.start()
    conn.start()  # single flight: a second start is a no-op
    await asyncio.sleep(0.4)
    assert len(attempts) == 3 and conn.state == State.BREAKER_OPEN
    assert value(m, "bot_platform_connection_breaker_open", platform="demo") == 1
    with pytest.raises(DependencyUnavailable, match="breaker_open"):
        conn.check()
    await asyncio.sleep(0.4)  # the pause ends: one more round of attempts
    assert len(attempts) >= 4
    await conn.close()
    assert value(m, "bot_platform_reconnects_total", platform="demo", reason="unreachable") >= 4


async def test_refused_credentials_open_the_breaker_at_once() -> None:
    calls = 0

    async def refused(link: Link, up: Callable[[], None]) -> Ended:
        nonlocal calls
        calls += 1
        raise ConnectionRefused("bad secret")

    conn = LongConnection("demo", refused, settings(breaker_seconds=10))
    conn.start()
    await asyncio.sleep(0.2)
    assert calls == 1 and conn.state == State.BREAKER_OPEN
    await conn.close()


async def test_a_session_that_sends_nothing_is_ended_by_the_watchdog() -> None:
    ended: list[str] = []

    async def silent(link: Link, up: Callable[[], None]) -> Ended:
        up()
        link.seen()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise
        return Ended("closed", "never")

    m = metrics()
    conn = LongConnection("demo", silent, settings(silence_seconds=0.2, reconnect_max_seconds=0.01), metrics=m)
    conn.start()
    await asyncio.sleep(0.1)
    assert conn.state == State.UP and value(m, "bot_platform_connection_up", platform="demo") == 1
    await asyncio.sleep(0.25)
    assert ended and value(m, "bot_platform_reconnects_total", platform="demo", reason="silent") >= 1
    await conn.close()
    assert value(m, "bot_platform_connection_up", platform="demo") == 0


async def test_a_disconnect_reconnects_at_once_but_repeated_quick_ones_back_off() -> None:
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    async def moving(link: Link, up: Callable[[], None]) -> Ended:
        starts.append(loop.time())
        up()
        return Ended("disconnect", "move", delay="none")

    conn = LongConnection("demo", moving, settings(reconnect_base_seconds=0.1, reconnect_max_seconds=0.1,
                                                   breaker_failures=100))
    conn.start()
    await asyncio.sleep(0.35)
    await conn.close()
    assert starts[1] - starts[0] < 0.05  # the first move is immediate
    # The rest wait out a backoff instead of spinning: never less than half the 0.1 s step.
    later = [b - a for a, b in zip(starts[1:], starts[2:])]
    assert later and min(later) >= 0.049, later


async def test_a_connection_that_keeps_dropping_backs_off_but_is_never_paused() -> None:
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    async def flapping(link: Link, up: Callable[[], None]) -> Ended:
        starts.append(loop.time())
        up()
        return Ended("closed", "dropped at once")

    conn = LongConnection("demo", flapping, settings(reconnect_base_seconds=0.02, reconnect_max_seconds=0.08,
                                                     breaker_failures=2, breaker_seconds=10))
    conn.start()
    await asyncio.sleep(0.6)
    await conn.close()
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) >= 6  # never paused for the 10 s breaker
    assert max(gaps[3:]) >= 0.04  # but spaced by the backoff, up to its ceiling
