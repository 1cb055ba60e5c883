"""Feishu/Lark settings: the FEISHU_* block."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from bot.platforms.base import PlatformSettings


class FeishuSettings(PlatformSettings):
    """FEISHU_APP_ID, FEISHU_APP_SECRET, FEISHU_VERIFICATION_TOKEN, FEISHU_ENCRYPT_KEY, FEISHU_API_BASE."""

    app_id: str
    app_secret: SecretStr
    verification_token: SecretStr
    # Optional in the console; when set, callbacks are encrypted and signed with it.
    encrypt_key: SecretStr | None = None
    # Lark (the international edition) is https://open.larksuite.com.
    api_base: str = "https://open.feishu.cn"

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
