"""Telegram Bot API calls: sendMessage.

The bot token is part of every method's URL: no URL is ever put into an error or a log line here,
and Telegram's own error description is scrubbed of the token before it is kept.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.platforms.base import DeliveryFailed
from bot.platforms.http import request_json


class TelegramAPI:
    """One bot's Bot API, addressed through its token."""

    def __init__(self, http: aiohttp.ClientSession, api_base: str, bot_token: str) -> None:
        self.http = http
        self._bot_token = bot_token
        self._send_url = f"{api_base.rstrip('/')}/bot{bot_token}/sendMessage"

    async def send_message(self, payload: dict[str, Any]) -> None:
        """Send a message; raise DeliveryFailed, retryable (with Telegram's retry_after) when rate limited."""
        # sendMessage has no idempotency key; the queue's saved reply keeps retries to one model call.
        status, data = await request_json(self.http, "POST", self._send_url, json=payload, passthrough=(429,))
        if status == 200 and data.get("ok") is True:
            return
        code = data.get("error_code", status)
        parameters = data.get("parameters")
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        if code == 429 or status == 429:
            raise DeliveryFailed(
                "Telegram sendMessage rate limited", retryable=True,
                retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
            )
        description = str(data.get("description") or "").replace(self._bot_token, "***")[:200]
        raise DeliveryFailed(f"Telegram sendMessage refused: {code} {description}".rstrip(), retryable=False)
