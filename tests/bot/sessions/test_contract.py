"""Every session store keeps turns per key, replaces them on save, and forgets them after the TTL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.errors import DependencyUnavailable
from bot.messages import Turn
from bot.sessions.base import SessionStore
from bot.sessions.memory import MemorySessionStore
from bot.sessions.redis import RedisSessionStore
from tests.support.ports import free_port


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessionStore(ttl=1, max_entries=100)
        return
    url = request.getfixturevalue("redis_url")
    client = aioredis.Redis.from_url(url)
    yield RedisSessionStore(client, ttl=1)
    await client.aclose()


async def test_unknown_key_has_no_history(store: SessionStore) -> None:
    assert await store.load("api:nobody") == []


async def test_saved_turns_come_back_in_order(store: SessionStore) -> None:
    turns = [Turn("user", "你好"), Turn("assistant", "hi ✓")]
    await store.save("feishu:u1", turns)
    assert await store.load("feishu:u1") == turns
    assert await store.load("feishu:u2") == []


async def test_save_replaces_the_history(store: SessionStore) -> None:
    await store.save("k", [Turn("user", "a")])
    await store.save("k", [Turn("user", "b")])
    assert await store.load("k") == [Turn("user", "b")]


async def test_history_expires_after_the_ttl(store: SessionStore) -> None:
    await store.save("k", [Turn("user", "a")])
    deadline = asyncio.get_running_loop().time() + 5
    while await store.load("k"):
        assert asyncio.get_running_loop().time() < deadline, "session did not expire"
        await asyncio.sleep(0.1)


async def test_check_passes_when_the_store_answers(store: SessionStore) -> None:
    await store.check()


async def test_redis_store_keeps_the_documented_key_with_a_ttl(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await RedisSessionStore(client, ttl=1800).save("qq:user-9", [Turn("user", "x")])
    assert await client.exists("session:qq:user-9") == 1
    assert 1790 < await client.ttl("session:qq:user-9") <= 1800
    await client.aclose()


async def test_redis_down_is_a_dependency_error_not_a_crash() -> None:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    store = RedisSessionStore(client, ttl=10)
    with pytest.raises(DependencyUnavailable):
        await store.load("k")
    with pytest.raises(DependencyUnavailable):
        await store.check()
    await client.aclose()


async def test_memory_store_evicts_the_least_recently_saved_past_its_cap() -> None:
    store = MemorySessionStore(ttl=60, max_entries=2)
    await store.save("a", [Turn("user", "1")])
    await store.save("b", [Turn("user", "2")])
    await store.save("a", [Turn("user", "3")])
    await store.save("c", [Turn("user", "4")])
    assert len(store) == 2
    assert await store.load("b") == []
    assert await store.load("a") == [Turn("user", "3")]
