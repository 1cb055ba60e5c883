"""FEISHU_* settings: App ID, App Secret and Verification Token turn Feishu on; the Encrypt Key is optional."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.platforms.feishu import plugin
from bot.platforms.registry import load_platforms
from tests.bot.platforms.feishu.conftest import APP_SECRET, ENCRYPT_KEY, TOKEN, env
from tests.bot.platforms.harness import PlatformLoop

ENV = {key: value for key, value in env("https://open.feishu.cn").items() if key != "FEISHU_API_BASE"}


def test_without_settings_the_platform_is_off() -> None:
    assert plugin.load_settings({}) is None
    assert "feishu" not in load_platforms({})


@pytest.mark.parametrize("missing", ["FEISHU_APP_ID", "FEISHU_APP_SECRET", "FEISHU_VERIFICATION_TOKEN"])
def test_a_partial_configuration_fails_naming_what_is_missing(missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        plugin.load_settings({key: value for key, value in ENV.items() if key != missing})


def test_the_encrypt_key_is_optional_and_an_empty_one_is_unset() -> None:
    settings = plugin.load_settings(ENV | {"FEISHU_ENCRYPT_KEY": ""})
    assert settings is not None and settings.encrypt_key is None  # type: ignore[attr-defined]


def test_the_api_base_defaults_to_feishu_and_secrets_are_masked() -> None:
    settings = plugin.load_settings(ENV)
    assert settings is not None
    assert settings.api_base == "https://open.feishu.cn"  # type: ignore[attr-defined]
    for secret in (APP_SECRET, TOKEN, ENCRYPT_KEY):
        assert secret not in repr(settings) and secret not in str(settings.model_dump())


def test_lark_is_the_same_platform_on_another_host() -> None:
    settings = plugin.load_settings(ENV | {"FEISHU_API_BASE": "https://open.larksuite.com/"})
    assert settings is not None
    assert settings.api_base == "https://open.larksuite.com"  # type: ignore[attr-defined]


async def test_the_platform_is_found_through_its_entry_point_and_listed_when_on(feishu: PlatformLoop) -> None:
    assert "feishu" in (await (await feishu.client.get("/api/health")).json())["platforms"]


def test_outbound_limits_are_feishus_per_chat_and_per_app_rates_unless_set() -> None:
    settings = plugin.load_settings(ENV)
    assert settings is not None
    assert settings.outbound_chat_limit == "5/second"  # type: ignore[attr-defined]
    assert settings.outbound_app_limit == "50/second;1000/minute"  # type: ignore[attr-defined]
    settings = plugin.load_settings(ENV | {"FEISHU_OUTBOUND_APP_LIMIT": "20/second"})
    assert settings is not None and settings.outbound_app_limit == "20/second"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["FEISHU_OUTBOUND_CHAT_LIMIT", "FEISHU_OUTBOUND_APP_LIMIT"])
def test_an_outbound_limit_that_is_not_a_rate_fails_at_start_naming_it(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        plugin.load_settings(ENV | {name: "5 per chat"})
