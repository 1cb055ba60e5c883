"""The DingTalk platform plugin."""

import aiohttp

from bot.platforms.base import GroupMessage, PlatformPlugin
from bot.platforms.dingtalk.adapter import DingTalkAdapter
from bot.platforms.dingtalk.api import post_robot_markdown
from bot.platforms.dingtalk.settings import DingTalkSettings


async def _group_robot(http: aiohttp.ClientSession, message: GroupMessage) -> None:
    await post_robot_markdown(http, message.webhook_url, message.title, message.markdown, secret=message.secret)


plugin = PlatformPlugin(
    name=DingTalkAdapter.name,
    env_prefix="DINGTALK_",
    settings_type=DingTalkSettings,
    required=("app_key", "app_secret"),
    routes=DingTalkAdapter.routes,
    create=DingTalkAdapter,
    group_robot=_group_robot,
)
