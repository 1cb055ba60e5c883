"""Feishu/Lark event callbacks: verify, decrypt, parse `im.message.receive_v1`, acknowledge, reply."""

from __future__ import annotations

import logging
import re
import uuid
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
from bot.platforms.feishu.api import FeishuAPI
from bot.platforms.feishu.crypto import DecryptError, callback_signature, decrypt
from bot.platforms.feishu.settings import FeishuSettings
from bot.platforms.feishu.websocket import ClientConfig, FeishuWebSocket
from bot.platforms.longconn import LongConnection, open_connection, queue_frame

log = logging.getLogger("bot.platforms.feishu")

ACK = WebhookResponse(body=b'{"msg":"success"}')
# Placeholders Feishu puts in the text for each @-mention ("@_user_1"); the names live in `mentions`.
_MENTION = re.compile(r"@_user_\d+|@_all")
# Fixed, so a re-sent reply carries the same `uuid` and Feishu drops the copy (its window is 1 h).
_REPLY_NAMESPACE = uuid.UUID("6f1c0e52-4a57-4d0e-9a34-0d1f6a0b7e21")
# Feishu refuses a card message whose request body is over 30 KB (code 230025), on reply and update alike.
MAX_CARD_BODY_BYTES = 30_000
# Feishu's limit on updates of one message (the PATCH page: 单条消息更新频控为 5 QPS).
MESSAGE_UPDATE_LIMIT = "5/second"


def reply_uuid(event_id: str) -> str:
    """The reply's idempotency key, derived from the event id (at most 50 characters)."""
    return str(uuid.uuid5(_REPLY_NAMESPACE, f"feishu:{event_id}"))


def card_uuid(event_id: str) -> str:
    """The streamed card's idempotency key: its own, so the card never swallows the plain reply sent instead
    when streaming broke off (Feishu keeps the first message of a uuid and drops later ones)."""
    return str(uuid.uuid5(_REPLY_NAMESPACE, f"feishu-card:{event_id}"))


def card_content(text: str) -> str:
    """An updatable card (`update_multi`) showing `text` as plain text, as the `content` string Feishu takes.

    Plain text, not lark_md: the model's words are shown as they are, never read as mentions or links.
    The text is cut (ending in an ellipsis) where a reply carrying the card would pass Feishu's 30 KB.
    """
    def content(shown: str) -> str:
        card = {"config": {"update_multi": True},
                "elements": [{"tag": "div", "text": {"tag": "plain_text", "content": shown}}]}
        return orjson.dumps(card).decode()

    def fits(shown: str) -> bool:
        # The reply body is the larger of the two requests that carry a card (update: content only).
        body = {"msg_type": "interactive", "content": content(shown), "uuid": card_uuid("")}
        return len(orjson.dumps(body)) <= MAX_CARD_BODY_BYTES

    if fits(text):
        return content(text)
    low, high = 0, len(text)  # fits(text[:low] + "…") holds; fits(text[:high] + "…") does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(text[:middle] + "…") else (low, middle)
    return content(text[:low] + "…")


def strip_mentions(text: str, keys: list[str]) -> str:
    for key in sorted(keys, key=len, reverse=True):
        text = text.replace(key, " ")
    return " ".join(_MENTION.sub(" ", text).split())


class FeishuAdapter:
    """POST /feishu/event (webhook mode) or the long connection (websocket mode): schema 2.0 events
    (and, over webhooks, v1 `message` events) of one Feishu or Lark app."""

    name = "feishu"
    routes = (Route("POST", "/feishu/event"),)

    def __init__(self, settings: FeishuSettings, deps: PlatformDeps) -> None:
        self.settings = settings
        self.deps = deps
        # None in websocket mode without a token: then every webhook callback is refused as bad_token.
        self._token = settings.verification_token.get_secret_value() if settings.verification_token else None
        self._encrypt_key = settings.encrypt_key.get_secret_value() if settings.encrypt_key else None
        self.api = FeishuAPI(
            deps.http, settings.api_base, settings.app_id, settings.app_secret.get_secret_value(), deps.clock
        )
        self.websocket: FeishuWebSocket | None = None
        self.connection: LongConnection | None = None

    def verify(self, request: WebhookRequest) -> None:
        """Check X-Lark-Signature and its timestamp when present.

        Feishu signs only when an Encrypt Key is set, and may leave the URL-verification
        challenge unsigned (lark-oapi checks only its token); decode() refuses any other
        unsigned callback once the type is known.
        """
        if self._encrypt_key is None or "X-Lark-Signature" not in request.headers:
            return
        timestamp = request.headers.get("X-Lark-Request-Timestamp", "")
        require_fresh(timestamp, self.deps.clock(), self.deps.max_skew_seconds)
        nonce = request.headers.get("X-Lark-Request-Nonce", "")
        expected = callback_signature(timestamp, nonce, self._encrypt_key, request.body)
        if not secrets_match(request.headers["X-Lark-Signature"], expected):
            raise WebhookRejected("bad_signature", "X-Lark-Signature does not match", 401)

    def decode(self, request: WebhookRequest) -> Decoded:
        payload = self._plaintext(request.body)
        if payload.get("type") == "url_verification":
            self._check_token(payload.get("token"))
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise WebhookRejected("malformed", "url_verification without a challenge")
            return Decoded("challenge", response=WebhookResponse(body=orjson.dumps({"challenge": challenge})))
        if self._encrypt_key is not None and "X-Lark-Signature" not in request.headers:
            raise WebhookRejected("bad_signature", "callback is not signed", 401)
        try:
            if isinstance(payload.get("header"), dict):
                header = payload["header"]
                self._check_token(header.get("token"))
                event_id, event_type = str(header["event_id"]), header.get("event_type")
                if event_type == "im.message.receive_v1":
                    return _message_v2(event_id, payload["event"], request.received_at)
            elif "uuid" in payload:
                self._check_token(payload.get("token"))
                event = payload["event"]
                if isinstance(event, dict) and event.get("type") == "message":
                    return _message_v1(str(payload["uuid"]), event, request.received_at)
            else:
                raise WebhookRejected("malformed", "neither a schema 2.0 nor a v1 event")
        except (KeyError, TypeError, AttributeError, orjson.JSONDecodeError):
            raise WebhookRejected("malformed", "event is missing required fields") from None
        return Decoded("ignore")

    def ack(self, request: WebhookRequest, decoded: Decoded) -> WebhookResponse:
        return ACK

    async def start(self) -> None:
        """In websocket mode, hold the long connection (every replica holds its own: see docs)."""
        if self.settings.mode != "websocket":
            return
        self.websocket = FeishuWebSocket(
            self.deps.http, self.settings.api_base, self.settings.app_id,
            self.settings.app_secret.get_secret_value(), self._on_event,
            max_ping_seconds=self.settings.silence_seconds / 3, on_config=self._honour,
        )
        # Feishu pushes each event to one of an app's connections (up to 50), never to all of them,
        # so replicas need no lease: each holds a connection and de-duplication covers re-pushes.
        self.connection = open_connection(self.name, self.websocket.session, self.settings, self.deps)
        self.connection.start()

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def check(self) -> None:
        """Ready in webhook mode; in websocket mode while the long connection is up."""
        if self.connection is not None:
            self.connection.check()

    def _honour(self, config: ClientConfig) -> None:
        """Feishu's reconnect settings: a random wait up to the nonce first, the interval as the longest
        wait, and the count as the failures in a row before the breaker pauses attempts."""
        if self.connection is None:
            return
        policy = self.connection.policy
        if config.reconnect_nonce is not None and config.reconnect_nonce >= 0:
            policy.first_jitter = config.reconnect_nonce
        if config.reconnect_interval is not None and config.reconnect_interval > 0:
            policy.ceiling = config.reconnect_interval
            policy.base = min(policy.base, config.reconnect_interval)
        if config.reconnect_count is not None and config.reconnect_count > 0:
            policy.breaker_failures = config.reconnect_count

    async def _on_event(self, payload: bytes) -> bool:
        # Plain JSON over the long connection; decrypted too, should an Encrypt Key apply to it.
        return await queue_frame(
            self.deps, self.name, lambda: _event(self._plaintext(payload), self.deps.clock()),
            "feishu long-connection event", "answered 500 so Feishu pushes it again",
        )

    def format(self, reply: Reply) -> dict[str, Any]:
        return {
            "msg_type": "text",
            "content": orjson.dumps({"text": reply.text}).decode(),
            "uuid": reply_uuid(reply.inbound.message_id),
        }

    async def send(self, reply: Reply) -> None:
        await self.api.reply(str(reply.inbound.reply_handle["message_id"]), self.format(reply))

    def outbound_limits(self, reply: Reply) -> Sequence[OutboundLimit]:
        """The chat's budget and the app's, keyed by app id so two apps never share one."""
        return self._budgets(reply.inbound)

    def update_limits(self, message: InboundMessage) -> Sequence[OutboundLimit] | None:
        """With FEISHU_STREAM_REPLIES: the chat's and the app's budgets, and Feishu's own limit on updates of
        one message (one reply per inbound message, so the inbound message names it)."""
        if not self.settings.stream_replies:
            return None
        return [*self._budgets(message),
                OutboundLimit(f"feishu:{self.settings.app_id}:reply:{message.message_id}", MESSAGE_UPDATE_LIMIT)]

    async def begin_reply(self, reply: Reply) -> str:
        """Reply to the message, as `send` does, with an updatable card; its message id is the handle."""
        body = {"msg_type": "interactive", "content": card_content(reply.text),
                "uuid": card_uuid(reply.inbound.message_id)}
        message_id = await self.api.reply(str(reply.inbound.reply_handle["message_id"]), body)
        if message_id is None:
            raise DeliveryFailed("feishu reply answered without data.message_id", retryable=False)
        return message_id

    async def update_reply(self, reply: Reply, handle: str) -> None:
        await self.api.update_card(handle, card_content(reply.text))

    def _budgets(self, message: InboundMessage) -> list[OutboundLimit]:
        app = f"feishu:{self.settings.app_id}"
        return [OutboundLimit(f"{app}:chat:{message.chat_id}", self.settings.outbound_chat_limit),
                OutboundLimit(app, self.settings.outbound_app_limit)]

    def _plaintext(self, body: bytes) -> dict[str, Any]:
        envelope = json_object(body)
        encrypted = envelope.get("encrypt")
        if encrypted is None:
            return envelope
        if self._encrypt_key is None:
            raise WebhookRejected("decrypt_failed", "encrypted callback but no FEISHU_ENCRYPT_KEY is set")
        if not isinstance(encrypted, str):
            raise WebhookRejected("decrypt_failed", "encrypt is not a string")
        try:
            plaintext = decrypt(self._encrypt_key, encrypted)
        except DecryptError as exc:
            raise WebhookRejected("decrypt_failed", f"cannot decrypt: {exc}") from None
        try:
            return json_object(plaintext)
        except WebhookRejected:
            # A wrong key passes the padding check about once in 256 tries; what it yields is noise.
            raise WebhookRejected("decrypt_failed", "cannot decrypt: the plaintext is not a JSON object") from None

    def _check_token(self, presented: object) -> None:
        if self._token is None or not isinstance(presented, str) or not secrets_match(presented, self._token):
            raise WebhookRejected("bad_token", "verification token does not match", 401)


def _message_v2(event_id: str, event: dict[str, Any], received_at: float) -> Decoded:
    sender, message = event["sender"], event["message"]
    # Messages sent by apps (including this one) are not ours to answer; nor is anything but text.
    if sender.get("sender_type") != "user" or message.get("message_type") != "text":
        return Decoded("ignore")
    content = orjson.loads(message["content"])
    keys = [str(m["key"]) for m in message.get("mentions") or () if isinstance(m, dict) and "key" in m]
    text = strip_mentions(str(content["text"]), keys)
    ids = sender["sender_id"]
    user = ids.get("open_id") or ids.get("union_id") or ids.get("user_id")
    if not text or not user:
        return Decoded("ignore")
    handle = {"message_id": str(message["message_id"]), "chat_id": str(message["chat_id"]),
              "chat_type": str(message.get("chat_type", ""))}
    return Decoded("message", messages=[InboundMessage(
        platform=FeishuAdapter.name, message_id=event_id, chat_id=handle["chat_id"], user_id=str(user), text=text,
        received_at=received_at, reply_handle=handle,
    )])


def _message_v1(event_uuid: str, event: dict[str, Any], received_at: float) -> Decoded:
    if event.get("msg_type") != "text":
        return Decoded("ignore")
    text = strip_mentions(str(event.get("text_without_at_bot") or event["text"]), [])
    if not text:
        return Decoded("ignore")
    handle = {"message_id": str(event["open_message_id"]), "chat_id": str(event["open_chat_id"]),
              "chat_type": str(event.get("chat_type", ""))}
    return Decoded("message", messages=[InboundMessage(
        platform=FeishuAdapter.name, message_id=event_uuid, chat_id=handle["chat_id"], user_id=str(event["open_id"]),
        text=text, received_at=received_at, reply_handle=handle,
    )])


def _event(payload: dict[str, Any], received_at: float) -> Decoded:
    """A long-connection event (schema 2.0, plaintext: the channel itself is authenticated)."""
    header = payload.get("header")
    if not isinstance(header, dict):
        raise WebhookRejected("malformed", "event has no header")
    try:
        if header.get("event_type") == "im.message.receive_v1":
            return _message_v2(str(header["event_id"]), payload["event"], received_at)
    except (KeyError, TypeError, AttributeError, orjson.JSONDecodeError):
        raise WebhookRejected("malformed", "event is missing required fields") from None
    return Decoded("ignore")
