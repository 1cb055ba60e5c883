"""The Feishu/Lark platform plugin."""

import aiohttp

from bot.platforms.base import GroupMessage, PlatformPlugin
from bot.platforms.feishu.adapter import FeishuAdapter
from bot.platforms.feishu.api import post_group_webhook
from bot.platforms.feishu.settings import FeishuSettings


async def _group_robot(http: aiohttp.ClientSession, message: GroupMessage) -> None:
    # Custom bots take plain text; markdown headings and bold stay readable as they are.
    await post_group_webhook(http, message.webhook_url, message.markdown, secret=message.secret)


plugin = PlatformPlugin(
    name=FeishuAdapter.name,
    env_prefix="FEISHU_",
    settings_type=FeishuSettings,
    # The verification token is also required, but only in webhook mode (see FeishuSettings).
    required=("app_id", "app_secret"),
    routes=FeishuAdapter.routes,
    create=FeishuAdapter,
    group_robot=_group_robot,
)
