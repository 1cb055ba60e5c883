"""A local DingTalk Stream gateway: connections/open, the WebSocket with frames built from
dingtalk_stream's own types, redelivery of unacknowledged callbacks, the session webhook that
replies arrive on, and the access token and card OpenAPI that streamed replies use. Served from
the test's own event loop, beside real bot processes."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from dingtalk_stream.chatbot import ChatbotMessage, TextContent
from dingtalk_stream.frames import CallbackMessage, Headers, SystemMessage

from tests.bot.platforms.dingtalk.cards import DingTalkCards
from tests.bot.platforms.push_server import PushServer

CLIENT_ID = "dingstreamkey"
CLIENT_SECRET = "stream-secret-Zq81"
ROBOT_CODE = "dingstreamkey"
ACCESS_TOKEN = "stream-access-token-5d1e"


def robot_message(base: str, msg_id: str, text: str) -> dict[str, Any]:
    """A robot message body as DingTalk sends it, made with the SDK's ChatbotMessage."""
    msg = ChatbotMessage()
    msg.message_id = msg_id
    msg.conversation_id = "cidGroupStream=="
    msg.conversation_type = "2"
    msg.conversation_title = "stream tests"
    msg.sender_id = "$:LWCP_v1:$senderStream"
    msg.sender_staff_id = "staff-stream-1"
    msg.sender_nick = "Tester"
    msg.robot_code = ROBOT_CODE
    msg.chatbot_user_id = "$:LWCP_v1:$robot"
    msg.message_type = "text"
    msg.text = TextContent()
    msg.text.content = f" {text}"
    msg.create_at = int(time.time() * 1000)
    msg.session_webhook = f"{base}/robot/sendBySession?session={msg_id}"
    msg.session_webhook_expired_time = int(time.time() * 1000) + 3_600_000
    body = msg.to_dict()
    # The SDK's own parser must read it back as the same message.
    assert ChatbotMessage.from_dict(body).text.content == f" {text}"
    return body


def frame(kind: str, topic: str, data: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    headers = Headers()
    headers.app_id = "stream-app"
    headers.connection_id = "conn-1"
    headers.content_type = Headers.CONTENT_TYPE_APPLICATION_JSON
    headers.message_id = message_id or uuid.uuid4().hex
    headers.time = int(time.time() * 1000)
    headers.topic = topic
    raw = {"specVersion": "1.0", "type": kind, "headers": headers.to_dict(), "data": json.dumps(data)}
    parser = {CallbackMessage.TYPE: CallbackMessage, SystemMessage.TYPE: SystemMessage}[kind]
    assert parser.from_dict(raw).headers.message_id == headers.message_id
    return raw


@dataclass(eq=False)
class StreamConnection:
    ws: web.WebSocketResponse
    ticket: str
    opened_at: float
    silent: bool = False
    acks: list[dict[str, Any]] = field(default_factory=list)
    pings_seen: int = 0
    closed_at: float | None = None


@dataclass
class DingTalkStreamGateway(PushServer[StreamConnection]):
    """Replies are (session, body); acknowledgements are counted by callback messageId."""

    refuse_credentials: bool = False
    refuse_tickets: bool = False
    opens: list[dict[str, Any]] = field(default_factory=list)
    open_times: list[float] = field(default_factory=list)
    tickets: dict[str, bool] = field(default_factory=dict)
    cards: DingTalkCards = field(default_factory=lambda: DingTalkCards(ACCESS_TOKEN))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1.0/gateway/connections/open", self._open)
        app.router.add_get("/connect", self._connect)
        app.router.add_post("/robot/sendBySession", self._session_reply)
        app.router.add_post("/v1.0/oauth2/accessToken", self._access_token)
        self.cards.add_routes(app)
        return self.watch(app)

    # -- what tests call (on the gateway's loop) --

    async def send_message(self, msg_id: str, text: str, *, drop_acks: int = 0,
                           on: StreamConnection | None = None) -> str:
        """Push a robot message as a CALLBACK frame; it is re-sent until acknowledged."""
        raw = frame(CallbackMessage.TYPE, ChatbotMessage.TOPIC, robot_message(self.base, msg_id, text))
        return await self.push(str(raw["headers"]["messageId"]), [json.dumps(raw)], drop_acks=drop_acks, on=on)

    async def send_callback(self, data: dict[str, Any]) -> str:
        """A robot-topic CALLBACK frame with any `data` (for bodies DingTalk would never send)."""
        raw = frame(CallbackMessage.TYPE, ChatbotMessage.TOPIC, data)
        return await self.push(str(raw["headers"]["messageId"]), [json.dumps(raw)], on=self.current())

    async def system(self, topic: str, data: dict[str, Any], on: StreamConnection | None = None) -> str:
        raw = frame(SystemMessage.TYPE, topic, data)
        await (on or self.current()).ws.send_str(json.dumps(raw))
        return str(raw["headers"]["messageId"])

    def replies_for(self, msg_id: str) -> int:
        return sum(1 for session, _ in self.replies if session == msg_id)

    # -- the protocol --

    async def _open(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.opens.append(body)
        self.open_times.append(time.monotonic())
        if self.refuse_credentials or body.get("clientId") != CLIENT_ID or body.get("clientSecret") != CLIENT_SECRET:
            return web.json_response(
                {"code": "InvalidAuthentication", "message": "clientId or clientSecret is invalid"}, status=401)
        ticket = uuid.uuid4().hex
        self.tickets[ticket] = False
        return web.json_response({"endpoint": f"ws://127.0.0.1:{self.port}/connect", "ticket": ticket})

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if self.refuse_tickets or self.tickets.get(ticket) is not False:  # unknown or already used
            return web.Response(status=401, text="bad ticket")
        self.tickets[ticket] = True
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        conn = StreamConnection(ws, ticket, time.monotonic())
        self.connections.append(conn)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    conn.pings_seen += 1
                    if not conn.silent:
                        await ws.pong(msg.data)
                    continue
                if msg.type != WSMsgType.TEXT:
                    continue
                ack = json.loads(msg.data)
                conn.acks.append(ack)
                self.acknowledged(ack.get("headers", {}).get("messageId"), ack.get("code") == 200)
        finally:
            conn.closed_at = time.monotonic()
        return ws

    async def _access_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("appKey") != CLIENT_ID or body.get("appSecret") != CLIENT_SECRET:
            return web.json_response({"code": "InvalidAuthentication", "message": "bad appKey or appSecret"},
                                     status=401)
        return web.json_response({"accessToken": ACCESS_TOKEN, "expireIn": 7200})

    async def _session_reply(self, request: web.Request) -> web.Response:
        self.replies.append((request.query.get("session", ""), await request.json()))
        return web.json_response({"errcode": 0, "errmsg": "ok"})
