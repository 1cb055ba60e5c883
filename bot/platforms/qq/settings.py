"""The QQ official bot's settings block (env prefix QQ_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from bot.platforms.base import PlatformSettings

GROUP_AND_C2C_EVENT = 1 << 25  # C2C_MESSAGE_CREATE, GROUP_AT_MESSAGE_CREATE
PUBLIC_GUILD_MESSAGES = 1 << 30  # AT_MESSAGE_CREATE
DEFAULT_INTENTS = GROUP_AND_C2C_EVENT | PUBLIC_GUILD_MESSAGES


class QQSettings(PlatformSettings):
    """QQ_APP_ID and QQ_APP_SECRET turn the platform on; the rest have working defaults."""

    app_id: str
    app_secret: SecretStr
    api_base: str = "https://api.sgroup.qq.com"
    token_url: str = "https://bots.qq.com/app/getAppAccessToken"
    # webhook: QQ posts callbacks to /qq/callback. websocket: we hold the gateway connection.
    mode: Literal["webhook", "websocket"] = "webhook"
    intents: int = Field(DEFAULT_INTENTS, ge=1)
    reconnect_base_seconds: float = Field(1.0, gt=0)
    reconnect_max_seconds: float = Field(60.0, gt=0)

    @field_validator("api_base", "token_url", mode="after")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("mode", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value
