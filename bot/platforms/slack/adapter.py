"""Slack Events API callbacks: url_verification, message and app_mention events, replies in thread."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import orjson

from bot.errors import WebhookRejected
from bot.messages import InboundMessage, Reply
from bot.platforms.base import (
    Decoded,
    DeliveryFailed,
    OutboundLimit,
    PlatformDeps,
    Route,
    WebhookRequest,
    WebhookResponse,
)
from bot.platforms.checks import json_object, require_fresh, secrets_match
from bot.platforms.slack.api import SlackAPI
from bot.platforms.slack.crypto import request_signature
from bot.platforms.slack.settings import SlackSettings

ANSWERED_EVENTS = frozenset({"message", "app_mention"})
_LEADING_MENTIONS = re.compile(r"^\s*(?:<@[A-Z0-9]+(?:\|[^>]*)?>\s*)+")


class SlackAdapter:
    name = "slack"
    routes = (Route("POST", "/slack/events"),)

    def __init__(self, settings: SlackSettings, deps: PlatformDeps) -> None:
        self.settings = settings
        self.deps = deps
        self._signing_secret = settings.signing_secret.get_secret_value()
        self.api = SlackAPI(deps.http, settings.api_base, settings.bot_token.get_secret_value())
        # Names the app in budget keys without the token: a digest of it.
        self._app = hashlib.sha256(settings.bot_token.get_secret_value().encode()).hexdigest()[:12]

    def verify(self, request: WebhookRequest) -> None:
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        require_fresh(timestamp, self.deps.clock(), self.deps.max_skew_seconds)
        expected = request_signature(self._signing_secret, timestamp, request.body)
        if not secrets_match(request.headers.get("X-Slack-Signature", ""), expected):
            raise WebhookRejected("bad_signature", "X-Slack-Signature does not match", status=401)

    def decode(self, request: WebhookRequest) -> Decoded:
        body = json_object(request.body)
        if body.get("type") == "url_verification":
            challenge = body.get("challenge")
            if not isinstance(challenge, str) or not challenge:
                raise WebhookRejected("malformed", "url_verification without a challenge")
            return Decoded("challenge", response=WebhookResponse(body=orjson.dumps({"challenge": challenge})))
        if body.get("type") != "event_callback":
            return Decoded("ignore")  # e.g. app_rate_limited notices
        event = body.get("event")
        if not isinstance(event, dict):
            raise WebhookRejected("malformed", "event_callback without an event object")
        # Our own replies come back as message events carrying bot_id; subtypes are edits, joins...
        # (A type that is not a string is no event of ours, and must not reach the set lookup.)
        event_type = event.get("type")
        if not isinstance(event_type, str) or event_type not in ANSWERED_EVENTS or "bot_id" in event \
                or event.get("subtype"):
            return Decoded("ignore")
        if not isinstance(event.get("text"), str):
            return Decoded("ignore")  # a file or other non-text message
        return Decoded("message", messages=[self._message(event, request.received_at)])

    def ack(self, request: WebhookRequest, decoded: Decoded) -> WebhookResponse:
        return WebhookResponse()

    def format(self, reply: Reply) -> dict[str, Any]:
        payload: dict[str, Any] = {"channel": reply.inbound.reply_handle["channel"], "text": reply.text}
        if reply.inbound.reply_handle.get("thread_ts"):
            payload["thread_ts"] = reply.inbound.reply_handle["thread_ts"]
        return payload

    async def send(self, reply: Reply) -> None:
        await self.api.post_message(self.format(reply))

    def update_limits(self, message: InboundMessage) -> Sequence[OutboundLimit] | None:
        if not self.settings.stream_replies:
            return None
        # chat.postMessage allows about one message a second in a channel; chat.update is a Tier 3
        # method (about 50 a minute per workspace and app).
        channel = message.reply_handle["channel"]
        return (OutboundLimit(f"slack:{self._app}:channel:{channel}", "1/second"),
                OutboundLimit(f"slack:{self._app}:chat.update", "50/minute"))

    async def begin_reply(self, reply: Reply) -> str:
        ts = await self.api.post_message(self.format(reply))
        if ts is None:
            raise DeliveryFailed("Slack chat.postMessage answered without a ts", retryable=False)
        return ts

    async def update_reply(self, reply: Reply, handle: str) -> None:
        await self.api.update_message({"channel": reply.inbound.reply_handle["channel"], "ts": handle,
                                       "text": reply.text})

    def _message(self, event: dict[str, Any], received_at: float) -> InboundMessage:
        channel, user, ts = event.get("channel"), event.get("user"), event.get("ts")
        if not (isinstance(channel, str) and isinstance(user, str) and isinstance(ts, str)) or not channel:
            raise WebhookRejected("malformed", "message event without channel, user or ts")
        raw_text: str = event["text"]
        thread_ts = event.get("thread_ts") or (None if event.get("channel_type") == "im" else ts)
        return InboundMessage(
            platform=self.name,
            # channel+ts names the message itself: a mention in a channel arrives twice, as
            # app_mention and as message, with different event_ids; Slack's retries repeat both.
            message_id=f"{channel}:{ts}",
            chat_id=channel,
            user_id=user,
            text=_LEADING_MENTIONS.sub("", raw_text).strip() or raw_text,
            received_at=received_at,
            reply_handle={"channel": channel, "thread_ts": thread_ts},
        )
