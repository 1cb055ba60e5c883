"""Fixtures for platform tests that run whole bot processes (long connections, replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.bots import BotProcesses


@pytest.fixture
async def bots(tmp_path: Path) -> AsyncIterator[BotProcesses]:
    """`python -m bot` processes with no platform on but what each test sets; stopped by pid at the end."""
    processes = BotProcesses(tmp_path, env={})
    yield processes
    await asyncio.to_thread(processes.stop_all)
