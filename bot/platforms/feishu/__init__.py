"""The Feishu/Lark platform plugin."""

from bot.platforms.base import PlatformPlugin
from bot.platforms.feishu.adapter import FeishuAdapter
from bot.platforms.feishu.settings import FeishuSettings

plugin = PlatformPlugin(
    name="feishu",
    env_prefix="FEISHU_",
    settings_type=FeishuSettings,
    required=("app_id", "app_secret", "verification_token"),
    routes=FeishuAdapter.routes,
    create=FeishuAdapter,
)
