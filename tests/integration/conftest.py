"""Fixtures for tests that run bot processes beside fakes served from the test's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.bots import BotProcesses


@pytest.fixture
async def bots(tmp_path: Path) -> AsyncIterator[BotProcesses]:
    """Bot processes with the example platform; each is stopped by its pid at the end."""
    processes = BotProcesses(tmp_path)
    yield processes
    await asyncio.to_thread(processes.stop_all)
