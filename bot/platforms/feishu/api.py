"""Feishu Open Platform calls: the tenant_access_token, message replies and card updates, and custom-bot webhooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.platforms.base import DeliveryFailed
from bot.platforms.feishu.crypto import webhook_sign
from bot.platforms.http import request_json
from bot.platforms.tokens import TokenCache

# lark-oapi refreshes this early; Feishu issues a new token only in the last 30 minutes anyway.
TOKEN_REFRESH_MARGIN = 600.0
TOKEN_INVALID = frozenset({99991661, 99991663, 99991668})
# 99991400: app-wide request limit; 230020: per-chat limit; 11232: message-service limit (also custom bots).
RATE_LIMITED = frozenset({99991400, 230020, 11232})


def failure(what: str, status: int, data: dict[str, Any], token: str | None = None) -> DeliveryFailed:
    """A Feishu error body as a DeliveryFailed: rate limits are retried, other refusals are not."""
    code = data.get("code", data.get("StatusCode"))
    message = str(data.get("msg", data.get("StatusMessage", "")))[:200]
    if token:
        # A bare tenant token ("t-…") echoed back has no name or "Bearer" before it for the scrubber to see.
        message = message.replace(token, "***")
    return DeliveryFailed(f"feishu {what} failed: HTTP {status}, code {code}: {message}",
                          retryable=code in RATE_LIMITED)


class FeishuAPI:
    """The Open Platform API of one app, with its tenant_access_token cached."""

    def __init__(
        self, http: aiohttp.ClientSession, api_base: str, app_id: str, app_secret: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.api_base = api_base
        self._credentials = {"app_id": app_id, "app_secret": app_secret}
        self.tokens = TokenCache(self._fetch_token, TOKEN_REFRESH_MARGIN, clock)

    async def _fetch_token(self) -> tuple[str, float]:
        url = f"{self.api_base}/open-apis/auth/v3/tenant_access_token/internal"
        status, data = await request_json(self.http, "POST", url, json=self._credentials)
        token, expire = data.get("tenant_access_token"), data.get("expire")
        if data.get("code") != 0 or not isinstance(token, str) or not isinstance(expire, int | float):
            raise failure("tenant_access_token", status, data)
        return token, float(expire)

    async def reply(self, message_id: str, body: dict[str, Any]) -> str | None:
        """Answer a message (`im/v1/messages/{id}/reply`) and return the new message's id; raise DeliveryFailed."""
        url = f"{self.api_base}/open-apis/im/v1/messages/{quote(message_id, safe='')}/reply"
        data = await self._call("POST", url, body, "reply")
        answer = data.get("data")
        new_id = answer.get("message_id") if isinstance(answer, dict) else None
        return new_id if isinstance(new_id, str) and new_id else None

    async def update_card(self, message_id: str, content: str) -> None:
        """Replace the card of a message the app sent (`PATCH im/v1/messages/{id}`); raise DeliveryFailed.

        The card is replaced whole, so sending the same card again is just another success.
        """
        url = f"{self.api_base}/open-apis/im/v1/messages/{quote(message_id, safe='')}"
        await self._call("PATCH", url, {"content": content}, "card update")

    async def _call(self, method: str, url: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        token = await self.tokens.get()
        status, data = await request_json(
            self.http, method, url, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        code = data.get("code")
        if code == 0:
            return data
        if code in TOKEN_INVALID:
            self.tokens.invalidate()
            raise DeliveryFailed(f"feishu rejected the tenant_access_token (code {code})", retryable=True)
        raise failure(what, status, data, token)

async def post_group_webhook(
    http: aiohttp.ClientSession, url: str, text: str, *, secret: str | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Post a text message to a custom bot (group robot) webhook, signed when the bot has a secret.

    Raises DeliveryFailed like a reply does; the URL carries the bot's credential, so it is never
    part of an error message.
    """
    body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
    if secret:
        timestamp = int(clock())
        body |= {"timestamp": str(timestamp), "sign": webhook_sign(secret, timestamp)}
    status, data = await request_json(http, "POST", url, json=body)
    # Older custom bots answer {"StatusCode": 0}, newer ones {"code": 0}.
    if status == 200 and data.get("code", data.get("StatusCode")) == 0:
        return
    raise failure("custom bot webhook", status, data)
