"""Settings load once from an environment mapping and fail naming the bad key, never echoing secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.errors import ConfigError
from bot.settings import load_settings


def test_defaults_need_nothing() -> None:
    settings = load_settings({})
    assert settings.bot_port == 18789
    assert settings.model_endpoint is None
    assert settings.session_ttl_seconds == 1800
    assert settings.max_token_limit == 2048
    assert settings.signature_max_skew_seconds == 300


def test_api_keys_are_a_comma_separated_list() -> None:
    assert load_settings({"BOT_API_KEY": "a, b,,c"}).api_keys == ("a", "b", "c")


def test_a_bad_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match="BOT_PORT"):
        load_settings({"BOT_PORT": "eighty"})


def test_a_bad_secret_is_named_but_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MAX_TOKEN_LIMIT": "2", "MODEL_API_KEY": "sk-abc"})
    assert "MAX_TOKEN_LIMIT" in caught.value.message
    assert "sk-abc" not in caught.value.message


def test_secrets_are_masked_in_repr() -> None:
    settings = load_settings({"MODEL_API_KEY": "sk-abc", "BOT_API_KEY": "key1", "REDIS_URL": "redis://:pw@h/0"})
    assert "sk-abc" not in repr(settings)
    assert "key1" not in repr(settings)
    assert "pw@" not in repr(settings)


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(ValidationError, match="frozen"):
        settings.bot_port = 1  # type: ignore[misc]


def test_model_fallbacks_pair_each_endpoint_with_a_key_and_a_model_name() -> None:
    settings = load_settings({
        "MODEL_ENDPOINT": "http://a/v1", "MODEL_NAME": "big",
        "MODEL_FALLBACK_ENDPOINT": "http://b/v1, http://c/v1", "MODEL_FALLBACK_API_KEY": "kb,kc",
    })
    assert settings.model_fallbacks == (("http://b/v1", "kb", "big"), ("http://c/v1", "kc", "big"))
    one_for_all = load_settings({
        "MODEL_ENDPOINT": "http://a/v1", "MODEL_FALLBACK_ENDPOINT": "http://b/v1,http://c/v1",
        "MODEL_FALLBACK_API_KEY": "k", "MODEL_FALLBACK_NAME": "small",
    })
    assert one_for_all.model_fallbacks == (("http://b/v1", "k", "small"), ("http://c/v1", "k", "small"))


@pytest.mark.parametrize("env, named", [
    ({"MODEL_ENDPOINT": "http://a/v1", "MODEL_FALLBACK_ENDPOINT": "http://b/v1,http://c/v1",
      "MODEL_FALLBACK_NAME": "x,y,z"}, "MODEL_FALLBACK_NAME"),
    ({"MODEL_FALLBACK_ENDPOINT": "http://b/v1"}, "MODEL_ENDPOINT"),
])
def test_a_fallback_list_that_does_not_line_up_fails_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env).model_fallbacks  # noqa: B018


def test_a_mismatched_fallback_key_list_is_named_without_echoing_any_key() -> None:
    settings = load_settings({"MODEL_ENDPOINT": "http://a/v1", "MODEL_FALLBACK_ENDPOINT": "http://b/v1,http://c/v1",
                              "MODEL_FALLBACK_API_KEY": "sk-one,sk-two,sk-three"})
    with pytest.raises(ConfigError) as caught:
        settings.model_fallbacks  # noqa: B018
    assert "MODEL_FALLBACK_API_KEY" in str(caught.value) and "sk-" not in str(caught.value)


def test_a_fallback_endpoint_must_be_an_http_api_base() -> None:
    with pytest.raises(ConfigError, match="MODEL_FALLBACK_ENDPOINT"):
        load_settings({"MODEL_ENDPOINT": "http://a/v1", "MODEL_FALLBACK_ENDPOINT": "http://b/v1,ftp://c"})
