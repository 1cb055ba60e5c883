"""Outbound budgets: at most the rate per window, a wait until the window frees, shared through Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.delivery.shaping import STORE_DOWN_DELAY, LoopMemoryStorage, OutboundShaper
from bot.platforms.base import OutboundLimit
from tests.support.ports import free_port

MakeShaper = Callable[[], Awaitable[OutboundShaper]]


@pytest.fixture(params=["memory", "redis"])
async def make_shaper(request: pytest.FixtureRequest) -> AsyncIterator[MakeShaper]:
    """Shapers as the bot builds them; under Redis every one made shares the budgets, like replicas do."""
    made: list[OutboundShaper] = []

    async def make() -> OutboundShaper:
        if request.param == "memory":
            shaper = OutboundShaper.in_memory()
        else:
            shaper = OutboundShaper.in_redis(request.getfixturevalue("redis_url"))
        made.append(shaper)
        return shaper

    yield make
    for shaper in made:
        await shaper.close()


def chat(name: str, rate: str = "2/second") -> OutboundLimit:
    return OutboundLimit(f"test:chat:{name}", rate)


APP = OutboundLimit("test:app", "3/second")


async def test_the_rate_passes_then_the_wait_lasts_until_the_oldest_slot_leaves_the_window(
    make_shaper: MakeShaper,
) -> None:
    shaper = await make_shaper()
    first = time.time()
    assert [await shaper.acquire([chat("a")]) for _ in range(2)] == [0.0, 0.0]
    wait = await shaper.acquire([chat("a")])
    answered = time.time()
    # One window after the first send, not after this refused attempt.
    assert first + 1.0 <= answered + wait
    assert wait <= 1.0 + 0.02
    await asyncio.sleep(wait)
    assert await shaper.acquire([chat("a")]) == 0.0


async def test_a_reply_waits_until_every_budget_it_draws_on_has_room(make_shaper: MakeShaper) -> None:
    shaper = await make_shaper()
    assert await shaper.acquire([chat("a"), APP]) == 0.0
    assert await shaper.acquire([chat("a"), APP]) == 0.0
    assert await shaper.acquire([chat("a"), APP]) > 0  # the chat is full
    assert await shaper.acquire([chat("b"), APP]) == 0.0  # the chat's refusal took no app slot
    assert await shaper.acquire([chat("c"), APP]) > 0  # the app is full, the chat is not


async def test_concurrent_replies_never_take_more_than_the_rate(make_shaper: MakeShaper) -> None:
    shaper = await make_shaper()
    waits = await asyncio.gather(*(shaper.acquire([chat("busy", "5/second")]) for _ in range(20)))
    assert sum(1 for wait in waits if wait == 0.0) == 5


async def test_replicas_on_one_redis_share_the_budget(redis_url: str) -> None:
    first, second = OutboundShaper.in_redis(redis_url), OutboundShaper.in_redis(redis_url)
    try:
        assert await first.acquire([chat("shared")]) == 0.0
        assert await second.acquire([chat("shared")]) == 0.0
        assert await first.acquire([chat("shared")]) > 0
        assert await second.acquire([chat("shared")]) > 0
    finally:
        await first.close()
        await second.close()


async def test_without_its_store_a_reply_waits_instead_of_going_out_unchecked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shaper = OutboundShaper.in_redis(f"redis://127.0.0.1:{free_port()}/0")
    try:
        caplog.set_level(logging.INFO, "bot.delivery")
        assert await shaper.acquire([chat("a")]) == STORE_DOWN_DELAY
        assert await shaper.acquire([chat("a")]) == STORE_DOWN_DELAY
    finally:
        await shaper.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["outbound budget store unavailable, replies wait: StorageError"]


async def test_a_reply_without_budgets_goes_at_once(make_shaper: MakeShaper) -> None:
    assert await (await make_shaper()).acquire([]) == 0.0


async def test_the_memory_store_forgets_windows_that_have_passed() -> None:
    storage = LoopMemoryStorage()
    shaper = OutboundShaper(storage)
    for _ in range(3):
        await shaper.acquire([chat("a", "5/second"), chat("b", "5/minute")])
    # No expiry task per call: the shaper sweeps.
    assert storage.timer is None
    storage.sweep(time.time() + 2)
    [(key, entries)] = storage.events.items()
    assert "test:chat:b" in key and len(entries) == 3
    storage.sweep(time.time() + 61)
    assert storage.events == {}
