"""DingTalk signatures against dingtalkchatbot's signing of the same secret and timestamp."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from dingtalkchatbot.chatbot import DingtalkChatbot

from bot.platforms.dingtalk.crypto import robot_url_sign, sign
from tests.bot.platforms.dingtalk.conftest import APP_SECRET


def reference_sign(secret: str, timestamp_ms: int) -> str:
    """dingtalkchatbot's URL-encoded `sign` for this secret and time."""
    robot = DingtalkChatbot("https://oapi.dingtalk.com/robot/send?access_token=t", secret=secret)
    robot.start_time = timestamp_ms / 1000
    robot.update_webhook()
    [stamp, signature] = robot.webhook.split("&timestamp=", 1)[1].split("&sign=")
    assert stamp == str(timestamp_ms)
    return signature


@pytest.mark.parametrize("timestamp_ms", [1577262236757, 1700000000000, 1763701234567])
@pytest.mark.parametrize("secret", [APP_SECRET, "SECb1c2", "SEC密钥"])
def test_the_signature_matches_dingtalkchatbot(secret: str, timestamp_ms: int) -> None:
    quoted = reference_sign(secret, timestamp_ms)
    assert robot_url_sign(secret, timestamp_ms) == quoted
    # The callback header carries the same signature, not URL-encoded.
    header = parse_qs(urlsplit(f"/?sign={quoted}").query)["sign"][0]
    assert sign(secret, str(timestamp_ms)) == header


def test_the_signature_depends_on_the_timestamp_and_the_secret() -> None:
    assert sign(APP_SECRET, 1700000000000) != sign(APP_SECRET, 1700000000001)
    assert sign(APP_SECRET, 1700000000000) != sign(APP_SECRET + "x", 1700000000000)
