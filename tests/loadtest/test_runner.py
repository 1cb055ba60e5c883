"""The runner picks its target and its users: platforms load only when the bot has them on and secrets are here."""

from __future__ import annotations

import pytest

from loadtest.runner import choose_users, resolve_target
from loadtest.settings import parse_weights

SLACK = {"SLACK_SIGNING_SECRET": "s"}


def test_chat_always_loads_and_a_platform_only_when_the_bot_has_it_on() -> None:
    assert choose_users([], {}, SLACK) == (["ChatUser"], [])
    assert choose_users(["slack"], {}, SLACK) == (["ChatUser", "SlackUser"], [])


def test_a_platform_on_in_the_bot_without_its_secrets_here_is_left_out_and_said_so() -> None:
    users, notes = choose_users(["slack", "wecom"], {}, SLACK)
    assert users == ["ChatUser", "SlackUser"]
    assert notes == [
        "wecom: on in the bot but WECOM_CORP_ID, WECOM_TOKEN, WECOM_ENCODING_AES_KEY not set here, not loaded"
    ]


def test_weights_are_configurable_and_zero_turns_a_user_class_off() -> None:
    weights = parse_weights("chat=0, slack=3")
    assert weights == {"chat": 0, "slack": 3}
    assert choose_users(["slack"], weights, SLACK) == (["SlackUser"], [])
    assert choose_users(["slack"], {"slack": 0}, SLACK) == (["ChatUser"], ["slack: weight 0, not loaded"])
    with pytest.raises(ValueError, match="NAME=INTEGER"):
        parse_weights("chat=lots")


def test_an_explicit_host_reads_the_bots_metrics_there_unless_told_otherwise() -> None:
    target = resolve_target("http://bot.example:18789/", None, None)
    assert (target.host, target.bot_metrics, target.sidecar_metrics) == (
        "http://bot.example:18789", "http://bot.example:18789/metrics", None
    )
    target = resolve_target("http://gw:8080", "none", "http://gw:9901/metrics")
    assert (target.bot_metrics, target.sidecar_metrics) == (None, "http://gw:9901/metrics")
