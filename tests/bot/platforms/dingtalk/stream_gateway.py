"""A local DingTalk Stream gateway: connections/open, the WebSocket with frames built from
dingtalk_stream's own types, redelivery of unacknowledged callbacks, the session webhook that
replies arrive on, and the access token and card OpenAPI that streamed replies use. Served from
the test's own event loop, beside real bot processes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from dingtalk_stream.chatbot import ChatbotMessage, TextContent
from dingtalk_stream.frames import CallbackMessage, Headers, SystemMessage

from tests.bot.platforms.dingtalk.cards import DingTalkCards

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
class Pending:
    frame: dict[str, Any]
    sent_at: float
    drop_acks: int = 0  # acknowledgements to lose on the way


@dataclass
class DingTalkStreamGateway:
    port: int = 0  # set once the server listens
    redeliver_after: float = 1.0
    refuse_credentials: bool = False
    refuse_tickets: bool = False
    opens: list[dict[str, Any]] = field(default_factory=list)
    open_times: list[float] = field(default_factory=list)
    tickets: dict[str, bool] = field(default_factory=dict)
    connections: list[StreamConnection] = field(default_factory=list)
    pending: dict[str, Pending] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)  # callback messageId -> acks received
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (session, body)
    cards: DingTalkCards = field(default_factory=lambda: DingTalkCards(ACCESS_TOKEN))
    _redeliverer: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1.0/gateway/connections/open", self._open)
        app.router.add_get("/connect", self._connect)
        app.router.add_post("/robot/sendBySession", self._session_reply)
        app.router.add_post("/v1.0/oauth2/accessToken", self._access_token)
        self.cards.add_routes(app)
        app.on_startup.append(self._start_redelivery)
        app.on_cleanup.append(self._stop)
        return app

    # -- what tests call (on the gateway's loop) --

    def live(self) -> list[StreamConnection]:
        return [c for c in self.connections if c.closed_at is None and not c.ws.closed]

    def current(self) -> StreamConnection:
        live = self.live()
        assert live, "no live connection"
        return live[-1]

    async def send_message(self, msg_id: str, text: str, *, drop_acks: int = 0,
                           on: StreamConnection | None = None) -> str:
        """Push a robot message as a CALLBACK frame; it is re-sent until acknowledged."""
        raw = frame(CallbackMessage.TYPE, ChatbotMessage.TOPIC, robot_message(self.base, msg_id, text))
        frame_id = raw["headers"]["messageId"]
        target = on or (self.live() or [None])[-1]
        if target is None:  # no connection now: it goes out on the next one
            self.pending[frame_id] = Pending(raw, 0.0, drop_acks)
            return frame_id
        self.pending[frame_id] = Pending(raw, time.monotonic(), drop_acks)
        try:
            await target.ws.send_str(json.dumps(raw))
        except ConnectionError:
            pass  # the connection just went: redelivered on the next one
        return frame_id

    async def send_callback(self, data: dict[str, Any]) -> str:
        """A robot-topic CALLBACK frame with any `data` (for bodies DingTalk would never send)."""
        raw = frame(CallbackMessage.TYPE, ChatbotMessage.TOPIC, data)
        frame_id = raw["headers"]["messageId"]
        self.pending[frame_id] = Pending(raw, time.monotonic())
        await self.current().ws.send_str(json.dumps(raw))
        return str(frame_id)

    async def system(self, topic: str, data: dict[str, Any], on: StreamConnection | None = None) -> str:
        raw = frame(SystemMessage.TYPE, topic, data)
        await (on or self.current()).ws.send_str(json.dumps(raw))
        return str(raw["headers"]["messageId"])

    async def close_all(self) -> None:
        """End every connection from the gateway's side (a restart of DingTalk's gateway)."""
        for conn in self.live():
            await conn.ws.close(code=1001)

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
                frame_id = ack.get("headers", {}).get("messageId")
                pending = self.pending.get(frame_id)
                if pending is None:
                    continue
                if pending.drop_acks > 0:
                    pending.drop_acks -= 1  # lost on the way: the gateway will send the frame again
                    continue
                if ack.get("code") == 200:
                    del self.pending[frame_id]
                    self.acked[frame_id] = self.acked.get(frame_id, 0) + 1
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

    async def _start_redelivery(self, app: web.Application) -> None:
        self._redeliverer = asyncio.create_task(self._redeliver())

    async def _stop(self, app: web.Application) -> None:
        if self._redeliverer is not None:
            self._redeliverer.cancel()
        for conn in self.live():
            await conn.ws.close()

    async def _redeliver(self) -> None:
        """Callbacks not acknowledged in time go out again, on the newest live connection."""
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            live = [c for c in self.live() if not c.silent]
            if not live:
                continue
            for pending in list(self.pending.values()):
                if now - pending.sent_at >= self.redeliver_after:
                    pending.sent_at = now
                    try:
                        await live[-1].ws.send_str(json.dumps(pending.frame))
                    except ConnectionError:
                        pass
