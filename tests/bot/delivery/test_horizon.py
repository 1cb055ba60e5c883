"""The retry horizon: per platform, with defaults for QQ and DingTalk, never past the platform's reply window."""

from __future__ import annotations

from bot.delivery.horizon import DEFAULT_PLATFORM_HORIZONS, RetryHorizon
from bot.messages import InboundMessage
from bot.platforms.qq.adapter import QQAdapter


def message(platform: str, **handle: object) -> InboundMessage:
    return InboundMessage(platform=platform, message_id="m", chat_id="c", user_id="u", text="hi",
                          received_at=1_700_000_000.0, reply_handle=dict(handle))


def test_platforms_without_a_default_get_the_general_horizon_and_settings_override_it() -> None:
    horizon = RetryHorizon(21600.0, {**DEFAULT_PLATFORM_HORIZONS, "telegram": 600.0})
    assert horizon.for_message(message("feishu")) == (21600.0, "feishu retry horizon")
    assert horizon.for_message(message("telegram")) == (600.0, "telegram retry horizon")
    assert horizon.for_message(message("dingtalk")) == (5400.0, "dingtalk retry horizon")


def test_qq_group_replies_stop_at_the_five_minute_passive_window_and_direct_ones_at_sixty() -> None:
    adapter = QQAdapter.__new__(QQAdapter)  # the hook reads only the message
    horizon = RetryHorizon()
    assert horizon.for_message(message("qq", kind="group"), adapter) == (300.0, "qq reply window")
    assert horizon.for_message(message("qq", kind="c2c"), adapter) == (3600.0, "qq retry horizon")
    # A window longer than a horizon set lower does not lengthen it.
    assert RetryHorizon(per_platform={"qq": 120.0}).for_message(message("qq", kind="c2c"), adapter) == (
        120.0, "qq retry horizon")
