"""The end-to-end loop for a platform test: the real bot in-process with its real plugin, and a fake platform API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from bot.app import create_app
from bot.messages import InboundMessage
from bot.platforms.base import PlatformAdapter, PlatformDeps, PlatformPlugin
from bot.platforms.registry import load_platforms
from bot.settings import load_settings
from tests.bot.conftest import sample
from tests.support.fake_platform import FakePlatformAPI, Recorded
from tests.support.ports import free_port


@dataclass
class PlatformLoop:
    """A running bot whose platform API base points at `api`."""

    client: TestClient
    api: FakePlatformAPI
    registry: CollectorRegistry
    platform: str

    def rejected(self, reason: str) -> float:
        return sample(self.registry, "bot_webhook_rejected_total", platform=self.platform, reason=reason)

    def duplicates(self) -> float:
        return sample(self.registry, "bot_duplicates_total", platform=self.platform)

    def metrics_text(self) -> str:
        return generate_latest(self.registry).decode()


class Script:
    """The answers of one fake API route: queued (JSON, status) answers first, then `default` for ever."""

    def __init__(self, api: FakePlatformAPI, method: str, path: str, default: dict[str, Any]) -> None:
        self.default = default
        self.queued: list[tuple[dict[str, Any], int]] = []
        api.on(method, path, self._answer)

    def then(self, payload: dict[str, Any], status: int = 200) -> Script:
        self.queued.append((payload, status))
        return self

    def _answer(self, _request: Recorded) -> web.Response:
        payload, status = self.queued.pop(0) if self.queued else (self.default, 200)
        return web.json_response(payload, status=status)


StartPlatform = Callable[[str, Callable[[str], dict[str, str]], FakePlatformAPI], Awaitable[PlatformLoop]]


@pytest.fixture
def api() -> FakePlatformAPI:
    """The fake platform API; a platform's conftest scripts its routes."""
    return FakePlatformAPI()


@pytest.fixture
def start_platform(
    aiohttp_client: Any, aiohttp_server: Any, registry: CollectorRegistry, tmp_path: Path
) -> StartPlatform:
    """Start `api`, then the bot with `env(api_base)`; the platform is found through its entry point."""

    async def start(platform: str, env: Callable[[str], dict[str, str]], api: FakePlatformAPI) -> PlatformLoop:
        # The remote's own access log is not ours (it shows tokens in URLs, as a platform's logs would).
        server = await aiohttp_server(api.app(), access_log=None)
        base = str(server.make_url("")).rstrip("/")
        # Short backoff: retries after a scripted fault happen within the test's patience.
        full_env = {"BOT_DATA_DIR": str(tmp_path), "DELIVERY_BACKOFF_BASE": "0.01", "DELIVERY_BACKOFF_MAX": "0.05",
                    **env(base)}
        platforms = load_platforms(full_env)
        assert platform in platforms, f"{platform} is not on with {sorted(full_env)}"
        app = create_app(load_settings(full_env), platforms=platforms, registry=registry)
        client: TestClient = await aiohttp_client(app)
        return PlatformLoop(client, api, registry, platform)

    return start


MakeAdapter = Callable[[PlatformPlugin, Callable[[str], dict[str, str]], FakePlatformAPI | None],
                       Awaitable[PlatformAdapter]]


@pytest.fixture
async def make_adapter(aiohttp_server: Any) -> AsyncIterator[MakeAdapter]:
    """An adapter on its own, for what the worker hides (retry hints, failure reasons).

    Built from `env(api_base)` like the bot builds it; `api=None` points it at a port nothing listens on.
    """
    async with aiohttp.ClientSession() as http:

        async def make(plugin: PlatformPlugin, env: Callable[[str], dict[str, str]],
                       api: FakePlatformAPI | None) -> PlatformAdapter:
            if api is None:
                base = f"http://127.0.0.1:{free_port()}"
            else:
                base = str((await aiohttp_server(api.app(), access_log=None)).make_url("")).rstrip("/")
            settings = plugin.load_settings(env(base))
            assert settings is not None
            created = plugin.create(settings, PlatformDeps(http, 300, time.time, _no_submit))
            assert isinstance(created, PlatformAdapter)
            return created

        yield make


async def _no_submit(platform: str, messages: Sequence[InboundMessage]) -> int:
    raise AssertionError("adapters under test do not submit")


async def assert_rejected(loop: PlatformLoop, resp: ClientResponse, status: int, reason: str) -> dict[str, Any]:
    """A refused callback: the status, our JSON error shape, and the reason counted once."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    payload: dict[str, Any] = await resp.json()
    assert payload["error"]["code"] == "webhook_rejected"
    assert loop.rejected(reason) == 1
    return payload


def assert_nothing_leaks(
    secrets: Iterable[str], caplog: pytest.LogCaptureFixture, *texts: str
) -> None:
    """No secret in any captured log record (message, arguments, traceback) nor in the given texts."""
    records = [r.getMessage() + " " + (r.exc_text or "") + " " + repr(r.__dict__) for r in caplog.records]
    haystacks = records + list(texts)
    for secret in secrets:
        leaks = [text for text in haystacks if secret in text]
        assert not leaks, f"a secret leaked into: {leaks[0][:300]}"


async def assert_answered_once(
    loop: PlatformLoop, send_path: str, post_duplicate: Callable[[], Awaitable[ClientResponse]],
    post_other: Callable[[], Awaitable[ClientResponse]],
) -> list[Any]:
    """Three deliveries of one event (two at once), then another event: exactly two replies in all.

    Returns the two replies' JSON bodies, the duplicate's first.
    """
    first, second = await asyncio.gather(post_duplicate(), post_duplicate())
    third = await post_duplicate()
    assert [r.status for r in (first, second, third)] == [200, 200, 200]
    await loop.api.wait_for(send_path)
    # A later, different event is answered; when its reply is in, any stray duplicate would be too.
    assert (await post_other()).status == 200
    await loop.api.wait_for(send_path, count=2)
    await until(lambda: loop.duplicates() == 2)
    calls = loop.api.calls(send_path)
    assert len(calls) == 2
    return [call.json() for call in calls]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition (no fixed sleeps)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Record every log line, debug included, so leak checks see what an operator could see."""
    caplog.set_level(logging.DEBUG)
