"""A local Feishu long-connection endpoint: /callback/ws/endpoint, the WebSocket speaking lark-oapi's own
protobuf frames (pings, pongs carrying ClientConfig, fragmented events, re-pushes of unanswered ones),
and the reply API that answers arrive on. Served from the test's own event loop."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from lark_oapi.ws.const import NO_CREDENTIAL
from lark_oapi.ws.enum import FrameType, MessageType
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

from tests.bot.platforms.feishu.conftest import APP_ID, APP_SECRET, TENANT_TOKEN, TOKEN_PATH, text_event
from tests.bot.platforms.push_server import PushServer

SERVICE_ID = 33
DEVICE_ID = "7405912349850566675"


def header(frame: Frame, key: str) -> str | None:
    for item in frame.headers:
        if item.key == key:
            return str(item.value)
    return None


@dataclass(eq=False)
class WsConnection:
    ws: web.WebSocketResponse
    opened_at: float
    silent: bool = False
    pings: list[Frame] = field(default_factory=list)
    ping_times: list[float] = field(default_factory=list)
    responses: list[Frame] = field(default_factory=list)
    closed_at: float | None = None


@dataclass
class FeishuWsEndpoint(PushServer[WsConnection]):
    """Replies are (message id replied to, body); acknowledgements (200s) are counted by frame message_id."""

    ping_interval: int = 120
    refuse_credentials: bool = False
    endpoint_calls: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/callback/ws/endpoint", self._endpoint)
        app.router.add_get("/ws", self._connect)
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", self._reply)
        return self.watch(app)

    def replies_for(self, event_id: str) -> int:
        """Replies shown in the chat: Feishu drops a reply whose `uuid` it has seen within the hour."""
        return len({body.get("uuid") for target, body in self.replies if target == f"om_{event_id}"})

    def reply_posts_for(self, event_id: str) -> int:
        return sum(1 for target, _ in self.replies if target == f"om_{event_id}")

    async def push_event(self, event_id: str, text: str, *, fragments: int = 1, drop_acks: int = 0,
                         on: WsConnection | None = None) -> str:
        """Push a message event (split into `fragments` data frames); re-pushed until answered with 200."""
        payload = json.dumps(text_event(event_id, f"@_user_1 {text}", message_id=f"om_{event_id}")).encode()
        frame_id = uuid.uuid4().hex
        size = -(-len(payload) // fragments)
        parts = [payload[i * size:(i + 1) * size] for i in range(fragments)]
        raws: list[str | bytes] = []
        for seq, part in enumerate(parts):
            frame = Frame()
            frame.SeqID, frame.LogID, frame.service, frame.method = seq + 1, 0, SERVICE_ID, FrameType.DATA.value
            for key, value in (("type", MessageType.EVENT.value), ("message_id", frame_id),
                               ("sum", str(fragments)), ("seq", str(seq)), ("trace_id", uuid.uuid4().hex)):
                item = frame.headers.add()
                item.key, item.value = key, value
            frame.payload = part
            raws.append(frame.SerializeToString())
        return await self.push(frame_id, raws, drop_acks=drop_acks, on=on)

    async def _endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.endpoint_calls.append(body)
        if self.refuse_credentials or body.get("AppID") != APP_ID or body.get("AppSecret") != APP_SECRET:
            return web.json_response({"code": NO_CREDENTIAL, "msg": "app_id or app_secret is invalid"})
        return web.json_response({"code": 0, "msg": "ok", "data": {
            "URL": f"ws://127.0.0.1:{self.port}/ws?device_id={DEVICE_ID}&service_id={SERVICE_ID}",
            "ClientConfig": {"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0,
                             "PingInterval": self.ping_interval},
        }})

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("service_id") != str(SERVICE_ID):
            return web.Response(status=400)
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        conn = WsConnection(ws, time.monotonic())
        self.connections.append(conn)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    if not conn.silent:
                        await ws.pong(msg.data)
                    continue
                if msg.type != WSMsgType.BINARY:
                    continue
                frame = Frame()
                frame.ParseFromString(msg.data)
                if frame.method == FrameType.CONTROL.value:
                    if header(frame, "type") == MessageType.PING.value:
                        conn.pings.append(frame)
                        conn.ping_times.append(time.monotonic())
                        if not conn.silent:
                            await ws.send_bytes(self._pong(frame))
                    continue
                conn.responses.append(frame)
                self._answered(frame)
        finally:
            conn.closed_at = time.monotonic()
        return ws

    def _pong(self, ping: Frame) -> bytes:
        pong = Frame()
        pong.SeqID, pong.LogID, pong.service, pong.method = 0, 0, ping.service, FrameType.CONTROL.value
        item = pong.headers.add()
        item.key, item.value = "type", MessageType.PONG.value
        pong.payload = json.dumps({"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0,
                                   "PingInterval": self.ping_interval}).encode()
        return pong.SerializeToString()

    def _answered(self, frame: Frame) -> None:
        self.acknowledged(header(frame, "message_id"), json.loads(frame.payload).get("code") == 200)

    async def _token(self, request: web.Request) -> web.Response:
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": TENANT_TOKEN, "expire": 7200})

    async def _reply(self, request: web.Request) -> web.Response:
        self.replies.append((request.match_info["message_id"], await request.json()))
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": f"om_r_{uuid.uuid4().hex}"}})
