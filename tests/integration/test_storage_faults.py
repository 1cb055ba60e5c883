"""Storage faults tell the truth: on a full disk /ready says the bot cannot take messages, a reply
sent while its completion could not be recorded is not sent again once the disk recovers, and a
queue Redis that would lose messages on restart is reported at start-up.

The full disk is real: a small tmpfs mounted for the test (it needs root; under CI a refused mount
fails the test) and filled with a file until the kernel answers ENOSPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support.bots import (
    TELEGRAM_HEADERS,
    TELEGRAM_SEND,
    TELEGRAM_WEBHOOK,
    BotProcesses,
    eventually,
    metric,
    telegram_update,
)
from tests.support.fake_platform import FakePlatformAPI, Recorded
from tests.support.redis_server import RedisServer
from tests.support.services import in_ci, require_binary


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB filesystem of its own, unmounted at the end."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem has no block left."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


async def ready(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, object]]:
    async with http.get(base + "/ready") as resp:
        return resp.status, await resp.json()


async def test_a_full_disk_makes_the_bot_unready_and_a_reply_sent_meanwhile_is_not_sent_again(
    bots: BotProcesses, small_disk: Path, telegram_api: tuple[FakePlatformAPI, str]
) -> None:
    api, api_url = telegram_api
    filled: list[Path] = []

    def fill_then_accept(request: Recorded) -> web.Response:
        # The disk fills while the platform takes the reply: the job cannot be marked done.
        if not filled:
            filled.append(fill(small_disk))
        return web.json_response({"ok": True, "result": {"message_id": 1}})

    api.on("POST", TELEGRAM_SEND, fill_then_accept)
    env = {
        "TELEGRAM_API_BASE": api_url, "BOT_DATA_DIR": str(small_disk / "data"),
        "BOT_DATA_MIN_FREE_BYTES": str(512 * 1024),
        # A short lease: without the fix the unrecorded job is claimed again and re-sent within a second or two.
        "DELIVERY_LEASE_SECONDS": "1",
    }
    proc, base = await bots.start(env)
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:
        assert (await ready(http, base))[0] == 200
        async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(8001, "hello")) as resp:
            assert resp.status == 200
        await api.wait_for(TELEGRAM_SEND, count=1)

        async def unready() -> bool:
            status, answer = await ready(http, base)
            return status == 503 and "disk nearly full" in str(answer["failing"].get("queue"))  # type: ignore[union-attr]

        await eventually(unready, what="/ready reporting the full disk")
        # While the disk stays full a new message is refused (the platform will send it again), not lost.
        async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(8002, "hello")) as resp:
            assert resp.status == 503
        await asyncio.sleep(2.5)  # past the lease, twice
        filled[0].unlink()

        async def ready_again() -> bool:
            return (await ready(http, base))[0] == 200

        await eventually(ready_again, what="/ready once the disk has room")
        assert "delivered but not recorded" in proc.output()

        async def drained() -> bool:
            return await metric(http, base, "bot_queue_depth", queue="inbound") == 0

        await eventually(drained, timeout=10, what="the queue drained")
        await asyncio.sleep(2.0)  # another lease period: nothing is sent again
        assert len(api.calls(TELEGRAM_SEND)) == 1, "the reply was sent again after the disk recovered"
        assert "delivery of job" in proc.output()
        assert await metric(http, base, "bot_delivery_attempts_total", outcome="delivered") == 1


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_binary("redis-server"), tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_queue_redis_that_would_lose_messages_on_restart_is_reported_at_start(
    bots: BotProcesses, own_redis: RedisServer
) -> None:
    import redis

    proc, base = await bots.start({"REDIS_URL": own_redis.url}, name="no-persistence")
    async with aiohttp.ClientSession() as http:
        assert await metric(http, base, "bot_queue_persistence", store="redis", mode="none") == 1
    assert "REDIS WITHOUT PERSISTENCE" in proc.output()
    assert "maxmemory-policy" not in proc.output()

    admin = redis.Redis.from_url(own_redis.url)
    with contextlib.closing(admin):
        admin.config_set("appendonly", "yes")
        admin.config_set("maxmemory-policy", "allkeys-lru")
    proc, base = await bots.start({"REDIS_URL": own_redis.url}, name="aof")
    async with aiohttp.ClientSession() as http:
        assert await metric(http, base, "bot_queue_persistence", store="redis", mode="aof") == 1
        assert await metric(http, base, "bot_queue_persistence", store="redis", mode="none") == 0
    assert "REDIS WITHOUT PERSISTENCE" not in proc.output()
    assert "maxmemory-policy allkeys-lru: under memory pressure it deletes queued messages" in proc.output()
