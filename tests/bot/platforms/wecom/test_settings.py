"""WECOM_* settings: all five values turn the platform on; a mistyped EncodingAESKey fails start-up unechoed."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.platforms.wecom import plugin
from tests.bot.platforms.wecom.conftest import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN

ENV = {"WECOM_CORP_ID": CORP_ID, "WECOM_AGENT_ID": AGENT_ID, "WECOM_SECRET": SECRET, "WECOM_TOKEN": TOKEN,
       "WECOM_ENCODING_AES_KEY": AES_KEY}


def test_without_settings_the_platform_is_off() -> None:
    assert plugin.load_settings({}) is None


def test_a_partial_configuration_fails_naming_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="WECOM_ENCODING_AES_KEY"):
        plugin.load_settings({k: v for k, v in ENV.items() if k != "WECOM_ENCODING_AES_KEY"})


@pytest.mark.parametrize("key", [AES_KEY[:-1], AES_KEY + "A", AES_KEY[:-1] + "!"], ids=["short", "long", "not-b64"])
def test_a_mistyped_encoding_aes_key_fails_without_echoing_it(key: str) -> None:
    with pytest.raises(ConfigError, match="WECOM_ENCODING_AES_KEY") as failure:
        plugin.load_settings({**ENV, "WECOM_ENCODING_AES_KEY": key})
    assert key not in str(failure.value)


def test_the_api_base_defaults_to_the_real_host_and_secrets_are_masked() -> None:
    settings = plugin.load_settings(ENV)
    assert settings is not None
    assert settings.api_base == "https://qyapi.weixin.qq.com"  # type: ignore[attr-defined]
    assert settings.agent_id == 1000002  # type: ignore[attr-defined]
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
