"""Fixtures for tests that run bot processes beside fakes served from the test's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bots import BotProcesses
from tests.support.fake_platform import FakePlatformAPI


@pytest.fixture
async def bots(tmp_path: Path) -> AsyncIterator[BotProcesses]:
    """Bot processes with the example platform; each is stopped by its pid at the end."""
    processes = BotProcesses(tmp_path)
    yield processes
    await asyncio.to_thread(processes.stop_all)


@pytest.fixture
async def platform_api(aiohttp_server: Any) -> tuple[FakePlatformAPI, str]:
    """The example platform's API and its base URL: every send succeeds unless the test scripts faults."""
    api = FakePlatformAPI()
    api.on("POST", "/send", {"ok": True})
    server = await aiohttp_server(api.app())
    return api, str(server.make_url("")).rstrip("/")
