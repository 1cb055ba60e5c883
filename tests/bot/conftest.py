"""Fixtures for in-process bot tests: the real app, a fresh metrics registry, optional fakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from bot.app import create_app
from bot.settings import Settings, load_settings

MakeClient = Callable[..., Awaitable[TestClient]]


def settings_for(**env: str) -> Settings:
    return load_settings(env)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_client(aiohttp_client: Any, registry: CollectorRegistry) -> MakeClient:
    """Build the real app from environment-style settings and return a client for it."""

    async def make(env: dict[str, str] | None = None, **collaborators: Any) -> TestClient:
        app = create_app(load_settings(env or {}), registry=registry, **collaborators)
        client: TestClient = await aiohttp_client(app)
        return client

    return make


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
