"""DINGTALK_* settings: AppKey and AppSecret turn DingTalk on; session webhooks go only to allowed hosts."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.platforms.dingtalk import plugin
from bot.platforms.registry import load_platforms
from tests.bot.platforms.dingtalk.conftest import APP_KEY, APP_SECRET
from tests.bot.platforms.harness import PlatformLoop

ENV = {"DINGTALK_APP_KEY": APP_KEY, "DINGTALK_APP_SECRET": APP_SECRET}


def test_without_settings_the_platform_is_off() -> None:
    assert plugin.load_settings({}) is None
    assert "dingtalk" not in load_platforms({})


@pytest.mark.parametrize("missing", ["DINGTALK_APP_KEY", "DINGTALK_APP_SECRET"])
def test_a_partial_configuration_fails_naming_what_is_missing(missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        plugin.load_settings({key: value for key, value in ENV.items() if key != missing})


def test_defaults_are_dingtalks_hosts_and_the_secret_is_masked() -> None:
    settings = plugin.load_settings(ENV)
    assert settings is not None
    assert settings.api_base == "https://api.dingtalk.com"  # type: ignore[attr-defined]
    assert settings.session_webhook_hosts == ("oapi.dingtalk.com", "api.dingtalk.com")  # type: ignore[attr-defined]
    assert settings.robot_code is None  # type: ignore[attr-defined]
    assert APP_SECRET not in repr(settings) and APP_SECRET not in str(settings.model_dump())


def test_session_webhook_hosts_are_a_comma_separated_list() -> None:
    settings = plugin.load_settings(ENV | {"DINGTALK_SESSION_WEBHOOK_HOSTS": " OAPI.dingtalk.com , 10.0.0.7 "})
    assert settings is not None
    assert settings.session_webhook_hosts == ("oapi.dingtalk.com", "10.0.0.7")  # type: ignore[attr-defined]


def test_the_outbound_limit_is_dingtalks_twenty_a_minute_unless_set() -> None:
    settings = plugin.load_settings(ENV)
    assert settings is not None and settings.outbound_limit == "20/minute"  # type: ignore[attr-defined]
    settings = plugin.load_settings(ENV | {"DINGTALK_OUTBOUND_LIMIT": "15/minute"})
    assert settings is not None and settings.outbound_limit == "15/minute"  # type: ignore[attr-defined]


def test_an_outbound_limit_that_is_not_a_rate_fails_at_start_naming_it() -> None:
    with pytest.raises(ConfigError, match="DINGTALK_OUTBOUND_LIMIT.*twenty a minute"):
        plugin.load_settings(ENV | {"DINGTALK_OUTBOUND_LIMIT": "twenty a minute"})


def test_streaming_is_off_by_default_and_the_card_streams_into_content() -> None:
    settings = plugin.load_settings(ENV)
    assert settings is not None and settings.stream_replies is False  # type: ignore[attr-defined]
    assert settings.card_template_id is None and settings.card_content_key == "content"  # type: ignore[attr-defined]


@pytest.mark.parametrize("template", [None, ""])
def test_streaming_asked_for_without_a_card_template_fails_at_start_naming_both(template: str | None) -> None:
    extra = {} if template is None else {"DINGTALK_CARD_TEMPLATE_ID": template}
    with pytest.raises(ConfigError, match="DINGTALK_STREAM_REPLIES.*needs DINGTALK_CARD_TEMPLATE_ID"):
        plugin.load_settings(ENV | {"DINGTALK_STREAM_REPLIES": "true"} | extra)


@pytest.mark.parametrize("name", ["DINGTALK_STREAM_UPDATE_LIMIT", "DINGTALK_STREAM_UPDATE_QUOTA"])
def test_card_update_budgets_that_are_not_rates_fail_at_start_naming_them(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}.*lots"):
        plugin.load_settings(ENV | {name: "lots"})


async def test_the_platform_is_found_through_its_entry_point_and_listed_when_on(dingtalk: PlatformLoop) -> None:
    assert "dingtalk" in (await (await dingtalk.client.get("/api/health")).json())["platforms"]
