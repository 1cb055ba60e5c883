"""Fixtures for the QQ tests: the local open platform and the bot wired to it in webhook mode."""

from __future__ import annotations

import pytest

from tests.bot.platforms.harness import (
    PlatformLoop,
    StartPlatform,
    start_platform,  # noqa: F401  (fixture)
)
from tests.bot.platforms.qq.fake_qq import QQOpenPlatform, event


@pytest.fixture
def qq_platform() -> QQOpenPlatform:
    platform = QQOpenPlatform()
    platform.accept_replies_for(
        event("group_at_message_create.json"), event("c2c_message_create.json"), event("at_message_create.json")
    )
    return platform


@pytest.fixture
async def qq(start_platform: StartPlatform, qq_platform: QQOpenPlatform) -> PlatformLoop:
    """The bot in webhook mode (the default) with QQ's API pointing at the local open platform."""
    return await start_platform("qq", qq_platform.env, qq_platform.api)
