"""The QQ official bot: Ed25519-signed callbacks or the gateway in, passive replies with msg_id + msg_seq out."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import orjson

from bot.errors import DependencyUnavailable, WebhookRejected
from bot.messages import InboundMessage, Reply
from bot.platforms.base import Decoded, DeliveryFailed, PlatformDeps, Route, WebhookRequest, WebhookResponse
from bot.platforms.qq.api import QQApi
from bot.platforms.qq.crypto import callback_message, derive_key, is_valid, parse_signature, validation_answer
from bot.platforms.qq.gateway import GatewayState, QQGateway
from bot.platforms.qq.settings import QQSettings

log = logging.getLogger("bot.platforms.qq")

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_HEARTBEAT_ACK = 11
OP_CALLBACK_VALIDATION = 13
CALLBACK_ACK = b'{"op":12}'  # op 12, "HTTP Callback ACK"

GROUP_AT_MESSAGE = "GROUP_AT_MESSAGE_CREATE"
C2C_MESSAGE = "C2C_MESSAGE_CREATE"
GUILD_AT_MESSAGE = "AT_MESSAGE_CREATE"
MESSAGE_EVENTS = frozenset({GROUP_AT_MESSAGE, C2C_MESSAGE, GUILD_AT_MESSAGE})

# One reply per inbound message, so its msg_seq is fixed: a re-send after a crash repeats the
# same msg_id + msg_seq, which the platform refuses as a duplicate instead of posting it twice.
FIRST_REPLY_SEQ = 1
# Passive replies are accepted this long after the message (seconds): group 5 min, direct chat 60 min.
PASSIVE_REPLY_WINDOWS = {"group": 300.0, "c2c": 3600.0}

_MENTION = re.compile(r"<@!?([^<>\s]+)>")
_MAX_TIMESTAMP_DIGITS = 12


class QQAdapter:
    name = "qq"
    routes = (Route("POST", "/qq/callback"),)

    def __init__(self, settings: QQSettings, deps: PlatformDeps) -> None:
        self.settings = settings
        self.deps = deps
        self._key = derive_key(settings.app_secret.get_secret_value())
        self._public_key = self._key.public_key()
        self.api = QQApi(deps.http, settings)
        self.gateway: QQGateway | None = None

    def verify(self, request: WebhookRequest) -> None:
        app_id = request.headers.get("X-Bot-Appid")
        if app_id is not None and app_id != self.settings.app_id:
            raise WebhookRejected("bad_token", "X-Bot-Appid is not this bot's app id", status=401)
        signature = parse_signature(request.headers.get("X-Signature-Ed25519", ""))
        timestamp = request.headers.get("X-Signature-Timestamp", "")
        if signature is None or not _is_unix_time(timestamp):
            raise WebhookRejected("bad_signature", "signature headers missing or malformed", status=401)
        if not is_valid(self._public_key, signature, callback_message(timestamp, request.body)):
            raise WebhookRejected("bad_signature", "signature does not match", status=401)
        # Checked after the signature, so this reason counts only genuine callbacks: replays or clock skew.
        if abs(request.received_at - int(timestamp)) > self.deps.max_skew_seconds:
            raise WebhookRejected("stale_timestamp", "timestamp outside the allowed window", status=401)

    def decode(self, request: WebhookRequest) -> Decoded:
        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise WebhookRejected("malformed", "body is not JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("op"), int):
            raise WebhookRejected("malformed", "body is not a QQ payload with an op code")
        op = payload["op"]
        if op == OP_CALLBACK_VALIDATION:
            return Decoded("challenge", response=self._validation(payload.get("d")))
        if op == OP_HEARTBEAT:
            body = orjson.dumps({"op": OP_HEARTBEAT_ACK, "d": payload.get("d")})
            return Decoded("challenge", response=WebhookResponse(body=body))
        event = payload.get("t")
        # A "t" that is not a string names no event of ours (and a list or object cannot be looked up).
        if op != OP_DISPATCH or not isinstance(event, str) or event not in MESSAGE_EVENTS:
            return Decoded("ignore")
        try:
            message = message_from_event(event, payload.get("d"), request.received_at)
        except ValueError as exc:
            raise WebhookRejected("malformed", str(exc)) from None
        return Decoded("message", messages=[message]) if message is not None else Decoded("ignore")

    def _validation(self, d: Any) -> WebhookResponse:
        if not isinstance(d, dict):
            raise WebhookRejected("malformed", "validation payload has no d object")
        plain_token, event_ts = d.get("plain_token"), d.get("event_ts")
        if isinstance(event_ts, int) and not isinstance(event_ts, bool):
            event_ts = str(event_ts)
        if not isinstance(plain_token, str) or not plain_token or not isinstance(event_ts, str) or not event_ts:
            raise WebhookRejected("malformed", "validation payload needs plain_token and event_ts")
        return WebhookResponse(body=orjson.dumps(validation_answer(self._key, event_ts, plain_token)))

    def ack(self, request: WebhookRequest, decoded: Decoded) -> WebhookResponse:
        return WebhookResponse(body=CALLBACK_ACK)

    def format(self, reply: Reply) -> dict[str, Any]:
        handle = reply.inbound.reply_handle
        if handle.get("kind") == "guild":
            return {"content": reply.text, "msg_id": handle.get("msg_id")}
        return {"content": reply.text, "msg_type": 0, "msg_id": handle.get("msg_id"),
                "msg_seq": handle.get("msg_seq", FIRST_REPLY_SEQ)}

    async def send(self, reply: Reply) -> None:
        try:
            path = reply_path(reply.inbound.reply_handle)
        except (KeyError, TypeError, ValueError):
            raise DeliveryFailed("qq reply handle is incomplete", retryable=False) from None
        if await self.api.post_message(path, self.format(reply)) == "already_sent":
            log.info("qq reply was already delivered (same msg_id and msg_seq); not sent again",
                     extra={"labels.platform": self.name})

    def reply_window(self, message: InboundMessage) -> float | None:
        """Seconds QQ accepts a passive reply: 5 minutes in a group, 60 in a direct chat."""
        return PASSIVE_REPLY_WINDOWS.get(str(message.reply_handle.get("kind")))

    async def start(self) -> None:
        if self.settings.mode != "websocket":
            return
        self.gateway = QQGateway(
            self.deps.http, self.api, self._on_dispatch, intents=self.settings.intents,
            backoff_base=self.settings.reconnect_base_seconds, backoff_max=self.settings.reconnect_max_seconds,
        )
        self.gateway.start()

    async def close(self) -> None:
        if self.gateway is not None:
            await self.gateway.close()

    async def check(self) -> None:
        """Ready in webhook mode; in websocket mode only while the gateway session is up."""
        if self.gateway is None:
            return
        state = self.gateway.snapshot()["state"]
        if state != GatewayState.READY:
            raise DependencyUnavailable(f"qq gateway is {state}")

    async def _on_dispatch(self, event: str, d: Any) -> None:
        if event not in MESSAGE_EVENTS:
            return
        try:
            message = message_from_event(event, d, self.deps.clock())
        except ValueError as exc:
            # Nothing to answer over a socket; skipping beats stalling every later event behind it.
            log.warning("qq gateway event skipped: %s", exc,
                        extra={"labels.platform": self.name, "labels.reason": "malformed"})
            return
        if message is not None:
            await self.deps.submit(self.name, [message])


def message_from_event(event: str, d: Any, received_at: float) -> InboundMessage | None:
    """The neutral message for a message event's `d` (same shape over webhook and gateway).

    None when there is no text left to answer (an image alone, a bare mention). Raises
    ValueError naming the missing field.
    """
    if not isinstance(d, dict):
        raise ValueError(f"{event} has no d object")
    author = d.get("author")
    if not isinstance(author, dict):
        raise ValueError(f"{event} has no author")
    message_id = _field(d, "id", event)
    content = d.get("content", "")
    if not isinstance(content, str):
        raise ValueError(f"{event} content is not text")
    if event == GROUP_AT_MESSAGE:
        kind, target, user = "group", _field(d, "group_openid", event), _field(author, "member_openid", event)
    elif event == C2C_MESSAGE:
        kind, target = "c2c", _field(author, "user_openid", event)
        user = target
    else:
        kind, target, user = "guild", _field(d, "channel_id", event), _field(author, "id", event)
        content = strip_bot_mentions(content, d.get("mentions"))
    text = content.strip()
    if not text:
        return None
    return InboundMessage(
        platform=QQAdapter.name, message_id=message_id, chat_id=target, user_id=user, text=text, received_at=received_at,
        reply_handle={"kind": kind, "target": target, "msg_id": message_id, "msg_seq": FIRST_REPLY_SEQ},
    )


def strip_bot_mentions(content: str, mentions: Any) -> str:
    """Remove the mentions of bots from guild message text, keeping mentions of people."""
    bot_ids = {str(m.get("id")) for m in mentions if isinstance(m, dict) and m.get("bot")} \
        if isinstance(mentions, list) else set()
    if bot_ids:
        return _MENTION.sub(lambda m: "" if m.group(1) in bot_ids else m.group(0), content)
    # Without a mention list, the mention that triggered AT_MESSAGE_CREATE is the leading one.
    return _MENTION.sub("", content.lstrip(), count=1) if _MENTION.match(content.lstrip()) else content


def reply_path(handle: dict[str, Any]) -> str:
    """The passive-reply endpoint for a message's reply handle."""
    target = quote(str(handle["target"]), safe="")
    kind = handle["kind"]
    if kind == "group":
        return f"/v2/groups/{target}/messages"
    if kind == "c2c":
        return f"/v2/users/{target}/messages"
    if kind == "guild":
        return f"/channels/{target}/messages"
    raise ValueError(f"unknown reply kind {kind!r}")


def _field(obj: dict[str, Any], name: str, event: str) -> str:
    value = obj.get(name)
    if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
        raise ValueError(f"{event} lacks {name}")
    return str(value)


def _is_unix_time(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS
