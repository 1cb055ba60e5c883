"""WeCom (企业微信) self-built app: encrypted XML callbacks answered through message/send."""

import aiohttp

from bot.platforms.base import GroupMessage, PlatformPlugin
from bot.platforms.wecom.adapter import WeComAdapter
from bot.platforms.wecom.api import post_group_robot
from bot.platforms.wecom.settings import WeComSettings


async def _group_robot(http: aiohttp.ClientSession, message: GroupMessage) -> None:
    await post_group_robot(http, message.webhook_url, message.markdown, markdown=True)


plugin = PlatformPlugin(
    name=WeComAdapter.name,
    env_prefix="WECOM_",
    settings_type=WeComSettings,
    required=("corp_id", "agent_id", "secret", "token", "encoding_aes_key"),
    routes=WeComAdapter.routes,
    create=WeComAdapter,
    group_robot=_group_robot,
)
