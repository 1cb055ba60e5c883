"""DingTalk robot messages, as signed HTTP callbacks or over the Stream connection: verify, parse, acknowledge, reply."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from yarl import URL

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
from bot.platforms.checks import json_object, secrets_match
from bot.platforms.dingtalk.api import SESSION_GONE, DingTalkAPI, post_webhook, webhook_failure
from bot.platforms.dingtalk.crypto import sign
from bot.platforms.dingtalk.settings import DingTalkSettings
from bot.platforms.dingtalk.stream import DingTalkStream
from bot.platforms.longconn import LongConnection, open_connection, queue_frame

log = logging.getLogger("bot.platforms.dingtalk")

ACK = WebhookResponse(body=b"{}")
# DingTalk's own rule for the callback timestamp (not SIGNATURE_MAX_SKEW_SECONDS).
MAX_SKEW_MS = 3600 * 1000
# A session webhook this close to its expiry is not worth a try: the OpenAPI is used instead.
SESSION_EXPIRY_MARGIN_MS = 5000
SINGLE_CHAT = "1"
# An AI card's open space: a group by its conversation id, a one-to-one chat with the robot by the user's staff id.
GROUP_SPACE = "dtv1.card//IM_GROUP.{}"
ROBOT_SPACE = "dtv1.card//IM_ROBOT.{}"


class DingTalkAdapter:
    """POST /dingtalk/callback (webhook mode) or the Stream connection (stream mode): an
    enterprise-internal robot's messages."""

    name = "dingtalk"
    routes = (Route("POST", "/dingtalk/callback"),)

    def __init__(self, settings: DingTalkSettings, deps: PlatformDeps) -> None:
        self.settings = settings
        self.deps = deps
        self._secret = settings.app_secret.get_secret_value()
        self.api = DingTalkAPI(deps.http, settings.api_base, settings.app_key, self._secret, deps.clock)
        self.stream: DingTalkStream | None = None
        self.connection: LongConnection | None = None

    def verify(self, request: WebhookRequest) -> None:
        timestamp, presented = request.headers.get("timestamp"), request.headers.get("sign")
        if not timestamp or not presented:
            raise WebhookRejected("bad_signature", "timestamp or sign header missing", 401)
        try:
            sent_at_ms = int(timestamp)
        except ValueError:
            raise WebhookRejected("stale_timestamp", "timestamp header is not a number", 401) from None
        if abs(self.deps.clock() * 1000 - sent_at_ms) > MAX_SKEW_MS:
            raise WebhookRejected("stale_timestamp", "timestamp is more than an hour from now", 401)
        expected = sign(self._secret, timestamp)
        if not secrets_match(presented, expected):
            raise WebhookRejected("bad_signature", "sign does not match", 401)

    def decode(self, request: WebhookRequest) -> Decoded:
        return decode_message(json_object(request.body), request.received_at)

    def ack(self, request: WebhookRequest, decoded: Decoded) -> WebhookResponse:
        return ACK

    async def start(self) -> None:
        """In stream mode, hold the Stream connection (one replica at a time when Redis is shared)."""
        if self.settings.mode != "stream":
            return
        self.stream = DingTalkStream(
            self.deps.http, self.settings.api_base, self.settings.app_key, self._secret, self._on_stream_message,
            ping_seconds=self.settings.silence_seconds / 3,
        )
        self.connection = open_connection(
            self.name, self.stream.session, self.settings, self.deps,
            lease_key=f"botwatch:connection:dingtalk:{self.settings.app_key}",
        )
        self.connection.start()

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        if self.stream is not None:
            await self.stream.close()

    async def check(self) -> None:
        """Ready in webhook mode; in stream mode while the connection is up (or held by another replica)."""
        if self.connection is not None:
            self.connection.check()

    async def _on_stream_message(self, body: dict[str, Any]) -> bool:
        return await queue_frame(
            self.deps, self.name, lambda: decode_message(body, self.deps.clock()), "dingtalk stream message",
            "left unacknowledged so DingTalk sends it again",
        )

    def format(self, reply: Reply) -> dict[str, Any]:
        """The session-webhook payload; the OpenAPI takes the same text as `sampleText`."""
        staff_id = reply.inbound.reply_handle.get("staff_id")
        return {
            "msgtype": "text",
            "text": {"content": reply.text},
            "at": {"atUserIds": [staff_id] if staff_id else []},
        }

    async def send(self, reply: Reply) -> None:
        """Answer through the session webhook while it lives, else through the robot OpenAPI.

        Neither offers an idempotency key, so a re-send after a crash between sending and
        recording the delivery can show the reply twice; the queue keeps that window small.
        """
        handle = reply.inbound.reply_handle
        webhook = self._session_webhook(handle)
        if webhook is not None:
            code = await post_webhook(self.deps.http, webhook, self.format(reply))
            if code == 0:
                return
            if code != SESSION_GONE:
                raise webhook_failure("session webhook", 200, {"errcode": code})
        robot_code = self._robot_code(handle)
        if handle.get("conversation_type") == SINGLE_CHAT:
            staff_id = handle.get("staff_id")
            if not staff_id:
                raise DeliveryFailed("no session webhook and no staff id to message", retryable=False)
            await self.api.send_to_user(robot_code, staff_id, reply.text)
        else:
            await self.api.send_to_group(robot_code, handle["conversation_id"], reply.text)

    def outbound_limits(self, reply: Reply) -> Sequence[OutboundLimit]:
        """One robot in one conversation, whichever way the reply goes.

        DingTalk counts a robot's messages per group (a session webhook belongs to one
        conversation). The key uses the robot code and conversation id rather than the session
        webhook URL, which is a credential and changes with every session.
        """
        robot = self._robot_code(reply.inbound.reply_handle)
        return [OutboundLimit(f"dingtalk:{robot}:{reply.inbound.chat_id}", self.settings.outbound_limit)]

    # Streamed replies: an AI card created early (createAndDeliver) and streamed into (card/streaming).

    def update_limits(self, message: InboundMessage) -> Sequence[OutboundLimit] | None:
        """The card's own budget in its conversation and the app's OpenAPI budget; None when streaming is off.

        Card updates are OpenAPI calls, not robot messages: they never draw on the robot's 20
        messages a minute, so a streamed answer does not hold back the finished reply or others.
        """
        if not self.settings.stream_replies or not self.settings.card_template_id:
            return None
        robot = self._robot_code(message.reply_handle)
        return (OutboundLimit(f"dingtalk:{robot}:{message.chat_id}:card", self.settings.stream_update_limit),
                OutboundLimit(f"dingtalk:{self.settings.app_key}:openapi", self.settings.stream_update_quota))

    async def begin_reply(self, reply: Reply) -> str:
        """Create the AI card holding the first words, delivered to the conversation; its outTrackId is the handle.

        The outTrackId is derived from the message, so a begin repeated after a crash names the
        same card rather than a second one.
        """
        handle = reply.inbound.reply_handle
        out_track_id = card_track_id(self.settings.app_key, reply.inbound.message_id)
        # The body dingtalk_stream's CardReplier.create_and_deliver_card builds, with our outTrackId.
        body: dict[str, Any] = {
            "cardTemplateId": self.settings.card_template_id,
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": {self.settings.card_content_key: reply.text}},
            "callbackType": "STREAM",
            "imGroupOpenSpaceModel": {"supportForward": True},
            "imRobotOpenSpaceModel": {"supportForward": True},
        }
        if handle.get("conversation_type") == SINGLE_CHAT:
            staff_id = handle.get("staff_id")
            if not staff_id:
                raise DeliveryFailed("no staff id to deliver a one-to-one card to", retryable=False)
            body["openSpaceId"] = ROBOT_SPACE.format(staff_id)
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT"}
        else:
            body["openSpaceId"] = GROUP_SPACE.format(handle["conversation_id"])
            body["imGroupOpenDeliverModel"] = {"robotCode": self._robot_code(handle)}
        await self.api.create_and_deliver_card(body)
        return out_track_id

    async def update_reply(self, reply: Reply, handle: str) -> None:
        """Replace the card's text with `reply.text`; the finished reply also closes the card's stream.

        The whole text goes every time (isFull), so sending the same text again, as a retry after
        a crash does, leaves the card as it was.
        """
        await self.api.stream_card({
            "outTrackId": handle,
            "guid": str(uuid.uuid4()),  # one per write, as dingtalk_stream sends it
            "key": self.settings.card_content_key,
            "content": reply.text,
            "isFull": True,
            "isFinalize": not reply.partial,
            "isError": False,
        })

    def _robot_code(self, handle: dict[str, Any]) -> str:
        return str(self.settings.robot_code or handle.get("robot_code") or self.settings.app_key)

    def _session_webhook(self, handle: dict[str, Any]) -> str | None:
        """The callback's session webhook, if it is still alive and points at an allowed DingTalk host."""
        raw, expires_ms = handle.get("session_webhook"), handle.get("session_webhook_expires_ms")
        if not isinstance(raw, str) or not isinstance(expires_ms, int):
            return None
        if expires_ms - SESSION_EXPIRY_MARGIN_MS <= self.deps.clock() * 1000:
            return None
        try:
            url = URL(raw)
        except ValueError:
            return None
        allowed = url.scheme in ("http", "https") and not url.user
        if not allowed or (url.host or "").lower() not in self.settings.session_webhook_hosts:
            # The URL's query holds a session credential: only the host is logged.
            log.warning("ignoring a session webhook on a host that is not allowed: %s", url.host,
                        extra={"labels.platform": self.name})
            return None
        return raw


def card_track_id(app_key: str, message_id: str) -> str:
    """The outTrackId of the card answering `message_id`: fixed per message, and opaque (64 hex digits, like the SDK's)."""
    return hashlib.sha256(f"botwatch:{app_key}:{message_id}".encode()).hexdigest()


def decode_message(body: dict[str, Any], received_at: float) -> Decoded:
    """The robot message body (HTTP callback or Stream frame `data`) as a neutral message."""
    try:
        message_id, chat_id = str(body["msgId"]), str(body["conversationId"])
        if body.get("msgtype") != "text":
            return Decoded("ignore")
        text = body["text"]["content"]
        if not isinstance(text, str):
            raise TypeError
    except (KeyError, TypeError):
        raise WebhookRejected("malformed", "message is missing required fields") from None
    staff_id = body.get("senderStaffId")
    user_id = staff_id or body.get("senderId")
    if not text.strip() or not user_id:
        return Decoded("ignore")
    handle = {
        "conversation_type": str(body.get("conversationType", "")),
        "conversation_id": chat_id,
        "staff_id": staff_id,
        "robot_code": body.get("robotCode"),
        "session_webhook": body.get("sessionWebhook"),
        "session_webhook_expires_ms": body.get("sessionWebhookExpiredTime"),
    }
    return Decoded("message", messages=[InboundMessage(
        platform="dingtalk", message_id=message_id, chat_id=chat_id, user_id=str(user_id), text=text.strip(),
        received_at=received_at, reply_handle=handle,
    )])
