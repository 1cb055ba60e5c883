"""Telegram Bot API webhook: updates authenticated by a secret token, answered with sendMessage."""

from bot.platforms.base import PlatformPlugin
from bot.platforms.telegram.adapter import TelegramAdapter
from bot.platforms.telegram.settings import TelegramSettings

plugin = PlatformPlugin(
    name=TelegramAdapter.name,
    env_prefix="TELEGRAM_",
    settings_type=TelegramSettings,
    required=("bot_token", "secret_token"),
    routes=TelegramAdapter.routes,
    create=TelegramAdapter,
)
