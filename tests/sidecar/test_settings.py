"""Sidecar settings: documented defaults, and a bad value stops start-up naming its variable."""

from __future__ import annotations

import ipaddress

import pytest

from servicekit.errors import ConfigError
from sidecar.settings import DEFAULT_RULES, load_settings, origin_address


def test_defaults_match_the_documented_ports_and_upstream() -> None:
    settings = load_settings({})
    assert (settings.sidecar_port, settings.sidecar_admin_port) == (8080, 9901)
    assert origin_address(settings.sidecar_upstream) == ("127.0.0.1", 18789)
    assert settings.sidecar_rate_limits == str(DEFAULT_RULES)
    assert (settings.sidecar_probe_interval, settings.sidecar_probe_failures, settings.sidecar_probe_successes) == (1.0, 3, 2)
    assert not settings.canary_enabled


def test_variables_are_read_case_insensitively_and_blank_means_unset() -> None:
    settings = load_settings({
        "sidecar_port": "9000", "SIDECAR_RATE_LIMITS": "", "SIDECAR_REDIS_URL": "",
        "SIDECAR_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1/32",
        "SIDECAR_CANARY_UPSTREAM": "http://127.0.0.1:9999", "SIDECAR_CANARY_PERCENT": "12.5",
    })
    assert settings.sidecar_port == 9000
    assert settings.sidecar_rate_limits is None and settings.sidecar_redis_url is None
    assert settings.sidecar_trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32"))
    assert settings.canary_enabled


def test_a_canary_at_zero_percent_is_off() -> None:
    assert not load_settings({"SIDECAR_CANARY_UPSTREAM": "http://127.0.0.1:9999"}).canary_enabled


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SIDECAR_UPSTREAM": "https://bot.example:443"}, "SIDECAR_UPSTREAM"),
        ({"SIDECAR_UPSTREAM": "http://127.0.0.1:18789/api"}, "SIDECAR_UPSTREAM"),
        ({"SIDECAR_UPSTREAM": "http://127.0.0.1:notaport"}, "SIDECAR_UPSTREAM"),
        ({"SIDECAR_CANARY_PERCENT": "101"}, "SIDECAR_CANARY_PERCENT"),
        ({"SIDECAR_MAX_IN_FLIGHT": "0"}, "SIDECAR_MAX_IN_FLIGHT"),
        ({"SIDECAR_TRUSTED_PROXIES": "not-a-network"}, "SIDECAR_TRUSTED_PROXIES"),
        ({"SIDECAR_PROBE_INTERVAL": "-1"}, "SIDECAR_PROBE_INTERVAL"),
        ({"SIDECAR_API_KEY_HASHES": "not-a-digest"}, "SIDECAR_API_KEY_HASHES"),
        ({"SIDECAR_HEADER_TIMEOUT": "0"}, "SIDECAR_HEADER_TIMEOUT"),
        ({"SIDECAR_MAX_CONNECTIONS_PER_CLIENT": "0"}, "SIDECAR_MAX_CONNECTIONS_PER_CLIENT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_the_redis_url_is_never_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SIDECAR_REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0", "SIDECAR_PORT": "x"})
    assert "hunter2" not in caught.value.message
    assert "hunter2" not in repr(load_settings({"SIDECAR_REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0"}))


def test_api_keys_are_masked_and_digests_are_taken_in_any_case() -> None:
    digest = "AB" * 32
    settings = load_settings({"BOT_API_KEY": "secret-one,secret-two", "SIDECAR_API_KEY_HASHES": digest})
    assert [key.get_secret_value() for key in settings.bot_api_key] == ["secret-one", "secret-two"]
    assert settings.sidecar_api_key_hashes == ("ab" * 32,)
    assert "secret-one" not in repr(settings)
