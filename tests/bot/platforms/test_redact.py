"""Credentials never leave in an error text: what platform and robot APIs echo back is scrubbed once."""

from __future__ import annotations

import pytest

from bot.platforms.base import DeliveryFailed
from bot.platforms.redact import scrub_credentials


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("errcode 300001: token is not exist, url https://oapi.dingtalk.com/robot/send?access_token=dd-tok-1&sign=sg", "dd-tok-1"),
        ("errcode 300001: token is not exist, url https://oapi.dingtalk.com/robot/send?access_token=dd-tok-1&sign=sg", "sg"),
        ("invalid webhook url https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-wecom", "693a91f6-wecom"),
        ("POST https://api.telegram.org/bot123456:AAE-tg_token/sendMessage: Not Found", "AAE-tg_token"),
        ("bad hook https://open.feishu.cn/open-apis/bot/v2/hook/2b4c-feishu-hook", "2b4c-feishu-hook"),
        ("invalid_auth for https://hooks.slack.com/services/T000/B000/slack-hook-secret", "slack-hook-secret"),
        ('{"app_secret": "app-sec-1", "msg": "bad"}', "app-sec-1"),
        ("header Authorization: Bearer t-model-key rejected", "t-model-key"),
        ("proxy http://user:hunter2@proxy.local:3128 refused", "hunter2"),
        ("corpsecret=wecom-corp-secret&corpid=ww1 invalid", "wecom-corp-secret"),
    ],
)
def test_credentials_in_error_texts_are_replaced(text: str, secret: str) -> None:
    scrubbed = scrub_credentials(text)
    assert secret not in scrubbed
    assert "***" in scrubbed


def test_what_is_not_a_credential_is_kept() -> None:
    text = "dingtalk group send failed: HTTP 200, errcode 310000: keywords not in content"
    assert scrub_credentials(text) == text


def test_every_delivery_failure_reason_is_scrubbed_at_the_boundary() -> None:
    failure = DeliveryFailed("robot said: url ?access_token=robot-tok-9 invalid", retryable=False)
    assert "robot-tok-9" not in failure.reason and "robot-tok-9" not in str(failure)
