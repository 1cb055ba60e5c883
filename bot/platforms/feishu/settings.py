"""Feishu/Lark settings: the FEISHU_* block."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from bot.platforms.base import PlatformSettings, RateLimits


class FeishuSettings(PlatformSettings):
    """FEISHU_APP_ID, FEISHU_APP_SECRET, FEISHU_VERIFICATION_TOKEN, FEISHU_ENCRYPT_KEY, FEISHU_API_BASE,
    FEISHU_OUTBOUND_CHAT_LIMIT, FEISHU_OUTBOUND_APP_LIMIT."""

    app_id: str
    app_secret: SecretStr
    verification_token: SecretStr
    # Optional in the console; when set, callbacks are encrypted and signed with it.
    encrypt_key: SecretStr | None = None
    # Lark (the international edition) is https://open.larksuite.com.
    api_base: str = "https://open.feishu.cn"
    # Feishu's message limits: 5 QPS into one chat (a group's bots share it), and the reply API's
    # 50/s and 1000/min per app; past them it refuses with 230020 or 99991400.
    outbound_chat_limit: RateLimits = "5/second"
    outbound_app_limit: RateLimits = "50/second;1000/minute"

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
