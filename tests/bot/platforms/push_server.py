"""What a platform's long-connection server does whatever its frames look like: it holds the
connections, pushes a message's frames, pushes them again until the message is acknowledged (or an
acknowledgement is lost on the way, as a test may ask), and ends every connection when it restarts.

The DingTalk Stream gateway (JSON text frames) and the Feishu endpoint (protobuf binary frames) are
built on it; they add their own handshake, frame format and reply API. Served from the test's loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web


class PushConnection(Protocol):
    ws: web.WebSocketResponse
    silent: bool  # a test made it stop answering: nothing is pushed on it
    closed_at: float | None


C = TypeVar("C", bound=PushConnection)


@dataclass
class Pending:
    frames: list[str | bytes]  # one message, sent in order (text frames as str, binary as bytes)
    sent_at: float  # 0.0: never sent, goes out on the next connection
    drop_acks: int = 0  # acknowledgements to lose on the way


@dataclass
class PushServer(Generic[C]):
    port: int = 0  # set once the server listens
    redeliver_after: float = 1.0
    connections: list[C] = field(default_factory=list)
    pending: dict[str, Pending] = field(default_factory=dict)  # by message id
    acked: dict[str, int] = field(default_factory=dict)  # message id -> acknowledgements received
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (whom the reply answers, body)
    _redeliverer: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def live(self) -> list[C]:
        return [c for c in self.connections if c.closed_at is None and not c.ws.closed]

    def current(self) -> C:
        live = self.live()
        assert live, "no live connection"
        return live[-1]

    async def close_all(self) -> None:
        """End every connection from the platform's side (a restart of its gateway)."""
        for conn in self.live():
            await conn.ws.close(code=1001)

    async def push(self, message_id: str, frames: list[str | bytes], *, drop_acks: int = 0, on: C | None = None) -> str:
        """Send one message's frames on `on` (else the newest connection, else the next one to open);
        they are pushed again until the message is acknowledged."""
        live = self.live()
        target = on or (live[-1] if live else None)
        self.pending[message_id] = Pending(frames, time.monotonic() if target is not None else 0.0, drop_acks)
        if target is not None:
            try:
                await self._send(target, frames)
            except ConnectionError:
                pass  # the connection just went: pushed again on the next one
        return message_id

    def acknowledged(self, message_id: str | None, ok: bool) -> None:
        """An acknowledgement arrived; it settles the message unless it is one the test has the network lose."""
        pending = self.pending.get(message_id or "")
        if message_id is None or pending is None:
            return
        if pending.drop_acks > 0:
            pending.drop_acks -= 1  # lost on the way: the message will be pushed again
            return
        if ok:
            del self.pending[message_id]
            self.acked[message_id] = self.acked.get(message_id, 0) + 1

    def watch(self, app: web.Application) -> web.Application:
        """Run the re-pushing while `app` serves, and end every connection when it stops."""
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    @staticmethod
    async def _send(conn: PushConnection, frames: list[str | bytes]) -> None:
        for raw in frames:
            if isinstance(raw, bytes):
                await conn.ws.send_bytes(raw)
            else:
                await conn.ws.send_str(raw)

    async def _start(self, app: web.Application) -> None:
        self._redeliverer = asyncio.create_task(self._redeliver())

    async def _stop(self, app: web.Application) -> None:
        if self._redeliverer is not None:
            self._redeliverer.cancel()
        for conn in self.live():
            await conn.ws.close()

    async def _redeliver(self) -> None:
        """Messages not acknowledged in time go out again, on the newest connection that answers."""
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
                        await self._send(live[-1], pending.frames)
                    except ConnectionError:
                        pass
