"""WeCom (企业微信) self-built app: encrypted XML callbacks answered through message/send."""

from bot.platforms.base import PlatformPlugin
from bot.platforms.wecom.adapter import WeComAdapter
from bot.platforms.wecom.settings import WeComSettings

plugin = PlatformPlugin(
    name="wecom",
    env_prefix="WECOM_",
    settings_type=WeComSettings,
    required=("corp_id", "agent_id", "secret", "token", "encoding_aes_key"),
    routes=WeComAdapter.routes,
    create=WeComAdapter,
)
