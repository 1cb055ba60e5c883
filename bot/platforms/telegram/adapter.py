"""Telegram webhook updates: secret-token check, text messages, an empty JSON ACK, sendMessage replies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
from bot.platforms.checks import json_object
from bot.platforms.telegram.api import TelegramAPI
from bot.platforms.telegram.crypto import SECRET_TOKEN_HEADER, secret_token_valid
from bot.platforms.telegram.settings import TelegramSettings

MAX_TEXT_UTF16 = 4096  # sendMessage refuses longer texts; Telegram counts UTF-16 code units


class TelegramAdapter:
    name = "telegram"
    routes = (Route("POST", "/telegram/webhook"),)

    def __init__(self, settings: TelegramSettings, deps: PlatformDeps) -> None:
        self.settings = settings
        self.deps = deps
        self._secret_token = settings.secret_token.get_secret_value()
        self.api = TelegramAPI(deps.http, settings.api_base, settings.bot_token.get_secret_value())
        # The numeric part of the token names the bot in budget keys; the secret part stays out of them.
        self._bot_id = settings.bot_token.get_secret_value().partition(":")[0]

    def verify(self, request: WebhookRequest) -> None:
        if not secret_token_valid(request.headers.get(SECRET_TOKEN_HEADER), self._secret_token):
            raise WebhookRejected("bad_token", f"{SECRET_TOKEN_HEADER} missing or wrong", status=401)

    def decode(self, request: WebhookRequest) -> Decoded:
        update = json_object(request.body)
        update_id = update.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise WebhookRejected("malformed", "update without an integer update_id")
        message = update.get("message")
        if message is None:
            return Decoded("ignore")  # edited messages, channel posts, callback queries...
        if not isinstance(message, dict):
            raise WebhookRejected("malformed", "message is not an object")
        sender = message.get("from")
        if not isinstance(message.get("text"), str) or (isinstance(sender, dict) and sender.get("is_bot")):
            return Decoded("ignore")  # photos, stickers, service messages; other bots
        return Decoded("message", messages=[self._message(update_id, message, request.received_at)])

    def ack(self, request: WebhookRequest, decoded: Decoded) -> WebhookResponse:
        return WebhookResponse(body=b"{}")

    def format(self, reply: Reply) -> dict[str, Any]:
        handle = reply.inbound.reply_handle
        payload: dict[str, Any] = {
            "chat_id": handle["chat_id"],
            "text": fit_utf16(reply.text, MAX_TEXT_UTF16),
            # Still answer if the user deleted the message meanwhile.
            "reply_parameters": {"message_id": handle["message_id"], "allow_sending_without_reply": True},
        }
        if handle.get("message_thread_id") is not None:
            payload["message_thread_id"] = handle["message_thread_id"]
        return payload

    async def send(self, reply: Reply) -> None:
        await self.api.send_message(self.format(reply))

    def update_limits(self, message: InboundMessage) -> Sequence[OutboundLimit] | None:
        if not self.settings.stream_replies:
            return None
        # Telegram's guidance: about one message a second in a chat, 20 a minute in a group, 30 a
        # second for the bot; edits count like messages.
        chat = f"telegram:{self._bot_id}:chat:{message.reply_handle['chat_id']}"
        return (OutboundLimit(chat, "1/second;20/minute"), OutboundLimit(f"telegram:{self._bot_id}", "30/second"))

    async def begin_reply(self, reply: Reply) -> str:
        message_id = await self.api.send_message(self.format(reply))
        if message_id is None:
            raise DeliveryFailed("Telegram sendMessage answered without a message_id", retryable=False)
        return str(message_id)

    async def update_reply(self, reply: Reply, handle: str) -> None:
        await self.api.edit_message_text({
            "chat_id": reply.inbound.reply_handle["chat_id"], "message_id": int(handle),
            "text": fit_utf16(reply.text, MAX_TEXT_UTF16),
        })

    def _message(self, update_id: int, message: dict[str, Any], received_at: float) -> InboundMessage:
        chat, sender = message.get("chat"), message.get("from")
        message_id = message.get("message_id")
        if not isinstance(chat, dict) or not isinstance(chat.get("id"), int) or not isinstance(message_id, int):
            raise WebhookRejected("malformed", "message without chat.id or message_id")
        user_id = sender.get("id") if isinstance(sender, dict) else chat["id"]
        handle: dict[str, Any] = {"chat_id": chat["id"], "message_id": message_id}
        if message.get("is_topic_message") and isinstance(message.get("message_thread_id"), int):
            handle["message_thread_id"] = message["message_thread_id"]
        return InboundMessage(
            platform=self.name,
            # Telegram re-posts an update until it gets a 2xx, always with the same update_id.
            message_id=str(update_id),
            chat_id=str(chat["id"]),
            user_id=str(user_id),
            text=message["text"],
            received_at=received_at,
            reply_handle=handle,
        )


def fit_utf16(text: str, limit: int) -> str:
    """`text` cut to `limit` UTF-16 code units, ending with an ellipsis when cut."""
    encoded = text.encode("utf-16-le")
    if len(encoded) <= 2 * limit:
        return text
    return encoded[:2 * (limit - 1)].decode("utf-16-le", "ignore") + "…"
