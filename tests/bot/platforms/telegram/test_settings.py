"""TELEGRAM_* settings: the webhook is on only with both tokens, and a bad secret token fails start-up unechoed."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.platforms.telegram import plugin


def test_without_settings_the_platform_is_off() -> None:
    assert plugin.load_settings({}) is None


def test_a_bot_token_without_a_secret_token_fails_naming_it() -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_SECRET_TOKEN"):
        plugin.load_settings({"TELEGRAM_BOT_TOKEN": "123:abc"})


def test_a_secret_token_setwebhook_would_refuse_fails_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_SECRET_TOKEN") as failure:
        plugin.load_settings({"TELEGRAM_BOT_TOKEN": "123:abc", "TELEGRAM_SECRET_TOKEN": "no spaces allowed"})
    assert "no spaces allowed" not in str(failure.value)


def test_the_api_base_defaults_to_the_real_host_and_tokens_are_masked() -> None:
    settings = plugin.load_settings({"TELEGRAM_BOT_TOKEN": "123:abc", "TELEGRAM_SECRET_TOKEN": "s"})
    assert settings is not None
    assert settings.api_base == "https://api.telegram.org"  # type: ignore[attr-defined]
    assert "123:abc" not in repr(settings) and "123:abc" not in str(settings.model_dump())
