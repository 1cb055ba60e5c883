"""QQ's open API: the app access token, passive replies and the gateway address."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import aiohttp

from bot.platforms.base import DeliveryFailed
from bot.platforms.http import request_json
from bot.platforms.qq.settings import QQSettings
from bot.platforms.tokens import TokenCache

log = logging.getLogger("bot.platforms.qq")

# The platform issues a new token only in the last 60 s of the old one (which stays valid
# meanwhile), so refreshing earlier than that just returns the old token again.
TOKEN_REFRESH_MARGIN = 50.0

# "Message deduplicated, check msg_seq": this msg_id + msg_seq pair was already sent.
DUPLICATE_REPLY_CODE = 40054005

SendOutcome = Literal["sent", "already_sent"]


class QQApi:
    """Calls to the bot API with a cached `QQBot` token; refused tokens are dropped and fetched again."""

    def __init__(
        self, http: aiohttp.ClientSession, settings: QQSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.http = http
        self.settings = settings
        self.tokens = TokenCache(self._fetch_token, TOKEN_REFRESH_MARGIN, clock)

    async def _fetch_token(self) -> tuple[str, float]:
        status, data = await request_json(
            self.http, "POST", self.settings.token_url,
            json={"appId": self.settings.app_id, "clientSecret": self.settings.app_secret.get_secret_value()},
        )
        token = data.get("access_token")
        if status != 200 or not isinstance(token, str) or not token:
            # A wrong app id or secret will not fix itself; the reason carries only the platform's code.
            raise DeliveryFailed(f"qq token request refused: HTTP {status}, code {data.get('code')}", retryable=False)
        try:
            lifetime = float(data.get("expires_in", ""))  # documented as a string, e.g. "7200"
        except (TypeError, ValueError):
            raise DeliveryFailed("qq token response has no usable expires_in", retryable=True) from None
        log.info("qq access token fetched", extra={"labels.platform": "qq", "labels.expires_in": lifetime})
        return token, lifetime

    async def authorization(self) -> str:
        """The value for `Authorization` and for the gateway's identify/resume `token` field."""
        return f"QQBot {await self.tokens.get()}"

    async def _headers(self) -> dict[str, str]:
        return {"Authorization": await self.authorization(), "X-Union-Appid": self.settings.app_id}

    async def post_message(self, path: str, payload: dict[str, Any]) -> SendOutcome:
        """Post a reply; "already_sent" when the platform says this msg_id + msg_seq went out before."""
        status, data = await request_json(
            self.http, "POST", self.settings.api_base + path, json=payload, headers=await self._headers()
        )
        if 200 <= status < 300:
            return "sent"
        code = data.get("code", data.get("err_code"))
        if code == DUPLICATE_REPLY_CODE:
            return "already_sent"
        self._refused(status)
        raise DeliveryFailed(f"qq API refused the reply: HTTP {status}, code {code}", retryable=False)

    async def gateway_url(self) -> str:
        """The WebSocket address to connect to, from GET /gateway/bot."""
        status, data = await request_json(
            self.http, "GET", self.settings.api_base + "/gateway/bot", headers=await self._headers()
        )
        url = data.get("url")
        if status != 200 or not isinstance(url, str) or not url:
            self._refused(status)
            raise DeliveryFailed(f"qq gateway address unavailable: HTTP {status}, code {data.get('code')}",
                                 retryable=True)
        return url

    def _refused(self, status: int) -> None:
        if status == 401:
            # The token expired early or was revoked: the next call fetches a fresh one.
            self.tokens.invalidate()
            raise DeliveryFailed("qq API refused the access token (HTTP 401)", retryable=True)
