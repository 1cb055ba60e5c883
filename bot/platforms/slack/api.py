"""Slack Web API calls: chat.postMessage and chat.update with the bot token.

The token travels in the Authorization header only; errors name Slack's error code, never the token.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.platforms.base import DeliveryFailed
from bot.platforms.http import request_json

# Slack's own words for "not now"; every other error (invalid_auth, channel_not_found...) stays an error.
TRY_LATER = frozenset({"ratelimited", "service_unavailable", "internal_error", "fatal_error", "request_timeout"})


class SlackAPI:
    """One Slack app's Web API, authenticated with its bot token."""

    def __init__(self, http: aiohttp.ClientSession, api_base: str, bot_token: str) -> None:
        self.http = http
        self._bot_token = bot_token
        self._post_message_url = api_base.rstrip("/") + "/api/chat.postMessage"
        self._update_url = api_base.rstrip("/") + "/api/chat.update"

    async def post_message(self, payload: dict[str, Any]) -> str | None:
        """Post a message and return its `ts`; raise DeliveryFailed, retryable when Slack says to try later."""
        # chat.postMessage has no idempotency key; the queue's saved reply keeps retries to one model call.
        data = await self._call("chat.postMessage", self._post_message_url, payload)
        ts = data.get("ts")
        return ts if isinstance(ts, str) and ts else None

    async def update_message(self, payload: dict[str, Any]) -> None:
        """Replace a message's text (`channel`, `ts`, `text`); the same text again is simply accepted."""
        await self._call("chat.update", self._update_url, payload)

    async def _call(self, method: str, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, data = await request_json(
            self.http, "POST", url, json=payload, headers={"Authorization": f"Bearer {self._bot_token}"},
        )
        if status == 200 and data.get("ok") is True:
            return data
        error = str(data.get("error") or f"HTTP {status}")[:100]
        raise DeliveryFailed(f"Slack {method} failed: {error}", retryable=error in TRY_LATER)
