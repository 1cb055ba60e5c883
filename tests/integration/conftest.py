"""Fixtures for tests that run bot processes beside fakes served from the test's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bots import TELEGRAM_SEND, BotProcesses
from tests.support.fake_platform import FakePlatformAPI


@pytest.fixture
async def bots(tmp_path: Path) -> AsyncIterator[BotProcesses]:
    """`python -m bot` processes with Telegram on; each is stopped by its pid at the end."""
    processes = BotProcesses(tmp_path)
    yield processes
    await asyncio.to_thread(processes.stop_all)


@pytest.fixture
async def telegram_api(aiohttp_server: Any) -> tuple[FakePlatformAPI, str]:
    """A stand-in Telegram Bot API and its base URL: every sendMessage succeeds unless the test scripts faults."""
    api = FakePlatformAPI()
    api.on("POST", TELEGRAM_SEND, {"ok": True, "result": {"message_id": 1}})
    server = await aiohttp_server(api.app())
    return api, str(server.make_url("")).rstrip("/")
