"""The DingTalk platform plugin."""

from bot.platforms.base import PlatformPlugin
from bot.platforms.dingtalk.adapter import DingTalkAdapter
from bot.platforms.dingtalk.settings import DingTalkSettings

plugin = PlatformPlugin(
    name="dingtalk",
    env_prefix="DINGTALK_",
    settings_type=DingTalkSettings,
    required=("app_key", "app_secret"),
    routes=DingTalkAdapter.routes,
    create=DingTalkAdapter,
)
