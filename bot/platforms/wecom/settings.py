"""WeCom (企业微信) self-built app settings: the WECOM_* environment block."""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, SecretStr, field_validator

from bot.platforms.base import PlatformSettings


class WeComSettings(PlatformSettings):
    corp_id: str = Field(min_length=1)
    agent_id: int
    secret: SecretStr
    token: SecretStr
    encoding_aes_key: SecretStr
    api_base: str = "https://qyapi.weixin.qq.com"

    @field_validator("encoding_aes_key")
    @classmethod
    def _is_43_chars_of_base64(cls, value: SecretStr) -> SecretStr:
        # Checked at start-up so a mistyped key fails loudly instead of every callback failing to decrypt.
        raw = value.get_secret_value()
        try:
            decoded = base64.b64decode(raw + "=", validate=True)
        except binascii.Error:
            decoded = b""
        if len(raw) != 43 or len(decoded) != 32:
            raise ValueError("must be the 43-character EncodingAESKey from the WeCom console")
        return value

