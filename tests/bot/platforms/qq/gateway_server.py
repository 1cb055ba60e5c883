"""A local QQ WebSocket gateway that tests drive step by step: hello, identify/resume, heartbeats, dispatches."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from botpy.gateway import BotWebSocket as Op

PATIENCE = 5.0


@dataclass
class Heartbeat:
    d: Any
    at: float  # loop time of arrival


@dataclass(eq=False)  # identity: connections live in a set
class GatewayConnection:
    """One client connection. Heartbeats are answered with op 11 (unless `ack_heartbeats` is off)
    and queued apart from the other payloads, which tests take in order with `expect`."""

    ws: web.WebSocketResponse
    request: web.Request
    gateway: FakeGateway
    payloads: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    heartbeats: asyncio.Queue[Heartbeat] = field(default_factory=asyncio.Queue)
    ack_heartbeats: bool = True
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def hello(self) -> None:
        await self.send({"op": Op.WS_HELLO, "d": {"heartbeat_interval": self.gateway.heartbeat_interval_ms}})

    async def expect(self, op: int) -> Any:
        """The next non-heartbeat payload from the client, which must have this op; returns its d."""
        payload = await asyncio.wait_for(self.payloads.get(), PATIENCE)
        assert payload.get("op") == op, f"expected op {op}, got {payload}"
        return payload.get("d")

    async def next_heartbeat(self) -> Heartbeat:
        return await asyncio.wait_for(self.heartbeats.get(), PATIENCE)

    async def heartbeat_with(self, seq: int) -> Heartbeat:
        """Wait for a heartbeat carrying `seq`; earlier ones may lag behind it but never run ahead."""
        async with asyncio.timeout(PATIENCE):
            while True:
                beat = await self.heartbeats.get()
                assert beat.d is None or beat.d <= seq, f"heartbeat d={beat.d} ahead of the last seq {seq}"
                if beat.d == seq:
                    return beat

    async def dispatch(self, event: str, d: Any, seq: int | None = None) -> int:
        """Send op 0; the seq continues the gateway's counter unless given."""
        if seq is None:
            self.gateway.seq += 1
            seq = self.gateway.seq
        await self.send({"op": Op.WS_DISPATCH_EVENT, "s": seq, "t": event, "d": d})
        return seq

    async def ready(self, session_id: str) -> int:
        self.gateway.seq = 0  # a new session numbers its events from 1
        return await self.dispatch("READY", {
            "version": 1, "session_id": session_id, "shard": [0, 1],
            "user": {"id": "11586990140073229091", "username": "botwatch", "bot": True, "status": 1},
        })

    async def resumed(self) -> int:
        return await self.dispatch("RESUMED", "")

    async def send(self, payload: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(payload, ensure_ascii=False))

    async def close(self, code: int) -> None:
        await self.ws.close(code=code, message=b"closed by the gateway")

    async def drop(self) -> None:
        """End the connection abruptly, without a close frame (a network failure)."""
        transport = self.request.transport
        assert transport is not None
        transport.abort()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Until the connection is gone, whichever side ended it."""
        await asyncio.wait_for(self.closed.wait(), PATIENCE)


@dataclass
class FakeGateway:
    heartbeat_interval_ms: int = 100
    seq: int = 0
    connections: asyncio.Queue[GatewayConnection] = field(default_factory=asyncio.Queue)
    live: set[GatewayConnection] = field(default_factory=set)
    stopping: bool = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/websocket", self._serve)
        return app

    async def next_connection(self) -> GatewayConnection:
        return await asyncio.wait_for(self.connections.get(), PATIENCE)

    async def shut_down(self) -> None:
        """Close every connection as a gateway going away does, and refuse new ones."""
        self.stopping = True
        for conn in list(self.live):
            await conn.close(1001)

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.stopping:
            await ws.close(code=1001)
            return ws
        conn = GatewayConnection(ws, request, self)
        self.live.add(conn)
        self.connections.put_nowait(conn)
        loop = asyncio.get_running_loop()
        try:
            async for msg in ws:
                payload = json.loads(msg.data)
                if payload.get("op") == Op.WS_HEARTBEAT:
                    conn.heartbeats.put_nowait(Heartbeat(payload.get("d"), loop.time()))
                    if conn.ack_heartbeats:
                        await conn.send({"op": Op.WS_HEARTBEAT_ACK})
                else:
                    conn.payloads.put_nowait(payload)
        finally:
            self.live.discard(conn)
            conn.closed.set()
        return ws
