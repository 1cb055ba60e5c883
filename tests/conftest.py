"""Fixtures shared by every test: real servers on free ports, always stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.redis_server import RedisServer
from tests.support.services import require_binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests isolate themselves with FLUSHDB."""
    server = RedisServer(require_binary("redis-server"), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    yield redis_server.url


@pytest.fixture
def start_bot(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start `python -m bot` processes with extra environment; returns (process, base_url)."""
    started: list[Process] = []

    def start(env: dict[str, str] | None = None, name: str = "bot") -> tuple[Process, str]:
        port = free_port()
        full_env = {"BOT_PORT": str(port), "BOT_DATA_DIR": str(tmp_path / name), **(env or {})}
        proc = Process(f"{name}-{port}", python_module("bot"), full_env, tmp_path)
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        proc.wait_http(base + "/health")
        return proc, base

    yield start
    for proc in started:
        proc.stop()
