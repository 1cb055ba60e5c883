"""SLACK_* settings: on with both secrets, off with none, a partial configuration fails naming the gap."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.platforms.slack import plugin
from tests.bot.platforms.slack.conftest import BOT_TOKEN, SIGNING_SECRET


def test_without_settings_the_platform_is_off() -> None:
    assert plugin.load_settings({}) is None


def test_a_partial_configuration_fails_naming_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        plugin.load_settings({"SLACK_SIGNING_SECRET": SIGNING_SECRET})


def test_the_api_base_defaults_to_the_real_host_and_secrets_are_masked() -> None:
    settings = plugin.load_settings({"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN})
    assert settings is not None
    assert settings.api_base == "https://slack.com"  # type: ignore[attr-defined]
    assert BOT_TOKEN not in repr(settings) and SIGNING_SECRET not in str(settings.model_dump())
