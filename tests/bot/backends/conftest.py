"""Model backend tests call a FakeModel over real HTTP through one client session per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.fake_model import FakeModel


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def model_at(aiohttp_server: Any, **kwargs: Any) -> tuple[FakeModel, str]:
    """A FakeModel (`kwargs` script it) served on a free port, and its OpenAI-compatible base URL."""
    fake = FakeModel(**kwargs)
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("/v1"))


@pytest.fixture
async def model(aiohttp_server: Any) -> tuple[FakeModel, str]:
    return await model_at(aiohttp_server)
