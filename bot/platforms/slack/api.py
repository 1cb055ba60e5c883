"""Slack Web API calls: chat.postMessage with the bot token.

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

    async def post_message(self, payload: dict[str, Any]) -> None:
        """Post a message; raise DeliveryFailed, retryable when Slack says to try later."""
        # chat.postMessage has no idempotency key; the queue's saved reply keeps retries to one model call.
        status, data = await request_json(
            self.http, "POST", self._post_message_url, json=payload,
            headers={"Authorization": f"Bearer {self._bot_token}"},
        )
        if status == 200 and data.get("ok") is True:
            return
        error = str(data.get("error") or f"HTTP {status}")[:100]
        raise DeliveryFailed(f"Slack chat.postMessage failed: {error}", retryable=error in TRY_LATER)
