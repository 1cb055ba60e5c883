"""Telegram bot settings: the TELEGRAM_* environment block."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from bot.platforms.base import PlatformSettings
from bot.platforms.telegram.crypto import SECRET_TOKEN_FORMAT


class TelegramSettings(PlatformSettings):
    bot_token: SecretStr
    # Required: without it anyone who learns the webhook URL could post updates.
    secret_token: SecretStr
    api_base: str = "https://api.telegram.org"
    # TELEGRAM_STREAM_REPLIES=true: send a reply early and edit it as the model writes. Off by default:
    # every edit is a Bot API call, and the whole reply in one message is what users got so far.
    stream_replies: bool = False

    @field_validator("secret_token")
    @classmethod
    def _accepted_by_set_webhook(cls, value: SecretStr) -> SecretStr:
        if not SECRET_TOKEN_FORMAT.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1-256 characters from A-Z, a-z, 0-9, _ and - (what setWebhook accepts)")
        return value
