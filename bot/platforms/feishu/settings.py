"""Feishu/Lark settings: the FEISHU_* block."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from bot.platforms.base import RateLimits
from bot.platforms.longconn import LongConnectionSettings


class FeishuSettings(LongConnectionSettings):
    """FEISHU_APP_ID, FEISHU_APP_SECRET, FEISHU_VERIFICATION_TOKEN, FEISHU_ENCRYPT_KEY, FEISHU_API_BASE,
    FEISHU_OUTBOUND_CHAT_LIMIT, FEISHU_OUTBOUND_APP_LIMIT, FEISHU_STREAM_REPLIES, FEISHU_MODE and, in websocket mode, the
    long-connection fields (FEISHU_SILENCE_SECONDS, FEISHU_RECONNECT_BASE_SECONDS, ...)."""

    app_id: str
    app_secret: SecretStr
    # webhook: Feishu posts events to /feishu/event. websocket: the bot holds a long connection
    # (its endpoint fetched from FEISHU_API_BASE), so it needs no public address.
    mode: Literal["webhook", "websocket"] = "webhook"
    # Checks webhook callbacks; events over the long connection come on an authenticated channel.
    verification_token: SecretStr | None = Field(None, validate_default=True)
    # Optional in the console; when set, callbacks are encrypted and signed with it.
    encrypt_key: SecretStr | None = None
    # Lark (the international edition) is https://open.larksuite.com.
    api_base: str = "https://open.feishu.cn"
    # Feishu's message limits: 5 QPS into one chat (a group's bots share it), and the reply API's
    # 50/s and 1000/min per app; past them it refuses with 230020 or 99991400.
    outbound_chat_limit: RateLimits = "5/second"
    outbound_app_limit: RateLimits = "50/second;1000/minute"
    # FEISHU_STREAM_REPLIES=true: reply with a card at the first words and update it as the model
    # writes. Off by default: every update is one more Open Platform call.
    stream_replies: bool = False

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("mode", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("verification_token")
    @classmethod
    def _required_for_webhooks(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("mode", "webhook") == "webhook":
            raise ValueError("required in webhook mode (FEISHU_MODE=webhook)")
        return value
