"""Telegram Bot API calls: sendMessage, editMessageText.

The bot token is part of every method's URL: no URL is ever put into an error or a log line here,
and Telegram's own error description is scrubbed of the token before it is kept.
"""

from __future__ import annotations

from typing import Any, NoReturn

import aiohttp

from bot.platforms.base import DeliveryFailed
from bot.platforms.http import request_json


class TelegramAPI:
    """One bot's Bot API, addressed through its token."""

    def __init__(self, http: aiohttp.ClientSession, api_base: str, bot_token: str) -> None:
        self.http = http
        self._bot_token = bot_token
        self._send_url = f"{api_base.rstrip('/')}/bot{bot_token}/sendMessage"
        self._edit_url = f"{api_base.rstrip('/')}/bot{bot_token}/editMessageText"

    async def send_message(self, payload: dict[str, Any]) -> int | None:
        """Send a message and return its id; raise DeliveryFailed, retryable (with Telegram's retry_after) when rate limited."""
        # sendMessage has no idempotency key; the queue's saved reply keeps retries to one model call.
        status, data = await request_json(self.http, "POST", self._send_url, json=payload, passthrough=(429,))
        if status == 200 and data.get("ok") is True:
            result = data.get("result")
            message_id = result.get("message_id") if isinstance(result, dict) else None
            return message_id if isinstance(message_id, int) else None
        self._refused("sendMessage", status, data)

    async def edit_message_text(self, payload: dict[str, Any]) -> None:
        """Replace a message's text; the same text again counts as done (Telegram says "not modified")."""
        status, data = await request_json(self.http, "POST", self._edit_url, json=payload, passthrough=(429,))
        if status == 200 and data.get("ok") is True:
            return
        if "message is not modified" in str(data.get("description") or ""):
            return
        self._refused("editMessageText", status, data)

    def _refused(self, method: str, status: int, data: dict[str, Any]) -> NoReturn:
        code = data.get("error_code", status)
        parameters = data.get("parameters")
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        if code == 429 or status == 429:
            raise DeliveryFailed(
                f"Telegram {method} rate limited", retryable=True,
                retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
            )
        description = str(data.get("description") or "").replace(self._bot_token, "***")[:200]
        raise DeliveryFailed(f"Telegram {method} refused: {code} {description}".rstrip(), retryable=False)
