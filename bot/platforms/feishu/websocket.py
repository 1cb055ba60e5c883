"""Feishu's long connection: fetch the endpoint, speak the protobuf frame protocol, ping at the
interval the server sets, reassemble fragmented events, and answer each one only once it is queued."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from bot.platforms.feishu import frames
from bot.platforms.feishu.frames import Frame, FrameError
from bot.platforms.http import request_json
from bot.platforms.longconn import CLOSED, ConnectionRefused, ConnectionUnavailable, Ended, Link

log = logging.getLogger("bot.platforms.feishu.websocket")

ENDPOINT_PATH = "/callback/ws/endpoint"
# Endpoint answers (lark-oapi ws/const.py): these two mean "try again later"; any other non-zero
# code (bad credentials, no long-connection subscription, too many connections) needs an operator.
OK, SYSTEM_BUSY, INTERNAL_ERROR = 0, 1, 1000040343
# WebSocket handshake refusals, in the `handshake-status` header.
AUTH_FAILED, FORBIDDEN, EXCEED_CONN_LIMIT = 514, 403, 1000040350
# Fragments of one event that do not all arrive within this long are dropped (Feishu re-sends).
FRAGMENT_SECONDS = 10.0
# Bounds on reassembly, so that a frame claiming a huge `sum` cannot make the bot allocate for it.
MAX_FRAGMENTS = 64
MAX_PENDING_EVENTS = 256

# Handles one event payload (schema 2.0 JSON): True once queued (or never to be answered), False
# when queueing failed, so that Feishu is told to push it again.
OnEvent = Callable[[bytes], Awaitable[bool]]


@dataclass(frozen=True)
class ClientConfig:
    """The reconnect and ping settings Feishu sends (seconds; a count of -1 means no limit)."""

    reconnect_count: int | None = None
    reconnect_interval: float | None = None
    reconnect_nonce: float | None = None
    ping_interval: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> ClientConfig | None:
        if not isinstance(data, dict):
            return None

        def number(name: str) -> float | None:
            value = data.get(name)
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        count = number("ReconnectCount")
        return cls(int(count) if count is not None else None, number("ReconnectInterval"),
                   number("ReconnectNonce"), number("PingInterval"))


class FeishuWebSocket:
    """The long-connection protocol for one app; `session` is what LongConnection keeps running."""

    def __init__(
        self, http: aiohttp.ClientSession, api_base: str, app_id: str, app_secret: str, on_event: OnEvent,
        *, max_ping_seconds: float, on_config: Callable[[ClientConfig], None] = lambda config: None,
    ) -> None:
        self.http = http
        self.api_base = api_base
        self._credentials = {"AppID": app_id, "AppSecret": app_secret}
        self.on_event = on_event
        self.on_config = on_config
        # Pings go out at the server's interval, or more often when the watchdog needs them to.
        self.max_ping_seconds = max_ping_seconds
        self.ping_seconds = max_ping_seconds
        self._fragments: dict[str, tuple[float, list[bytes | None]]] = {}

    def configure(self, config: ClientConfig) -> None:
        if config.ping_interval is not None and config.ping_interval > 0:
            self.ping_seconds = min(config.ping_interval, self.max_ping_seconds)
        self.on_config(config)

    async def endpoint(self) -> URL:
        """The WebSocket address (with its device and service ids) and the server's client settings."""
        status, data = await request_json(
            self.http, "POST", self.api_base + ENDPOINT_PATH, json=self._credentials, headers={"locale": "zh"},
        )
        code, message = data.get("code"), str(data.get("msg", ""))[:200]
        if status != 200 or code in (SYSTEM_BUSY, INTERNAL_ERROR):
            raise ConnectionUnavailable(f"the endpoint call answered HTTP {status}, code {code}: {message}")
        if code != OK:
            raise ConnectionRefused(
                f"Feishu refused the long connection (code {code}: {message}); check FEISHU_APP_ID and "
                "FEISHU_APP_SECRET, and that the app receives events over a long connection"
            )
        answer = data.get("data")
        body: dict[str, Any] = answer if isinstance(answer, dict) else {}
        url = body.get("URL")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ConnectionUnavailable("the endpoint answer has no WebSocket URL")
        config = ClientConfig.from_json(body.get("ClientConfig"))
        if config is not None:
            self.configure(config)
        return URL(url)

    async def session(self, link: Link, up: Callable[[], None]) -> Ended:
        url = await self.endpoint()
        try:
            service_id = int(url.query.get("service_id", ""))
        except ValueError:
            raise ConnectionUnavailable("the endpoint URL has no numeric service_id") from None
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=3.0)
        try:
            ws = await self.http.ws_connect(url, autoping=False, heartbeat=None, timeout=timeout)
        except aiohttp.WSServerHandshakeError as exc:
            raise _handshake_refusal(exc) from None
        try:
            up()
            link.seen()
            link.spawn(self._ping(ws, service_id), "feishu-ws-ping")
            return await self._read(ws, link)
        finally:
            await ws.close()

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse, service_id: int) -> None:
        while not ws.closed:
            ping = Frame(service=service_id, method=frames.CONTROL, headers=[(frames.TYPE, frames.PING)])
            try:
                await ws.send_bytes(ping.encode())
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                return
            await asyncio.sleep(self.ping_seconds)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, link: Link) -> Ended:
        async for msg in ws:
            link.seen()
            if msg.type == aiohttp.WSMsgType.PING:
                await ws.pong(msg.data)
                continue
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            try:
                frame = Frame.decode(msg.data)
            except FrameError as exc:
                log.warning("feishu long connection sent a frame that cannot be read (%s); ignored", exc,
                            extra={"labels.platform": "feishu"})
                continue
            if frame.method == frames.CONTROL:
                self._control(frame)
            elif frame.method == frames.DATA:
                await self._data(ws, frame)
        return Ended(CLOSED, f"connection closed (code {ws.close_code})")

    def _control(self, frame: Frame) -> None:
        if frame.header(frames.TYPE) == frames.PONG and frame.payload:
            try:
                config = ClientConfig.from_json(orjson.loads(frame.payload))
            except orjson.JSONDecodeError:
                return
            if config is not None:
                self.configure(config)

    async def _data(self, ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
        kind, message_id = frame.header(frames.TYPE), frame.header(frames.MESSAGE_ID) or ""
        payload = self._assemble(frame, message_id)
        if payload is None or kind != frames.EVENT:
            return  # a fragment still waiting for the rest, or a card action (not subscribed)
        started = time.monotonic()
        queued = await self.on_event(payload)
        # The same frame goes back with the outcome as its payload; 500 makes Feishu push it again.
        frame.headers.append((frames.BIZ_RT, str(int((time.monotonic() - started) * 1000))))
        frame.payload = orjson.dumps({"code": 200 if queued else 500})
        await ws.send_bytes(frame.encode())

    def _assemble(self, frame: Frame, message_id: str) -> bytes | None:
        try:
            total, seq = int(frame.header(frames.SUM) or "1"), int(frame.header(frames.SEQ) or "0")
        except ValueError:
            total, seq = 1, 0
        if total <= 1:
            return frame.payload or b""
        if not 0 <= seq < total or total > MAX_FRAGMENTS:
            log.warning("feishu sent a fragment that cannot be reassembled (seq %d of %d); ignored", seq, total,
                        extra={"labels.platform": "feishu"})
            return None
        now = time.monotonic()
        for key in [k for k, (at, _) in self._fragments.items() if now - at > FRAGMENT_SECONDS]:
            del self._fragments[key]
        if message_id not in self._fragments and len(self._fragments) >= MAX_PENDING_EVENTS:
            return None  # dropped unanswered: Feishu pushes the event again
        _, parts = self._fragments.setdefault(message_id, (now, [None] * total))
        if len(parts) != total:
            return None
        parts[seq] = frame.payload or b""
        if any(part is None for part in parts):
            return None
        del self._fragments[message_id]
        return b"".join(part for part in parts if part is not None)


def _handshake_refusal(exc: aiohttp.WSServerHandshakeError) -> Exception:
    headers: Mapping[str, str] = exc.headers or {}
    status = headers.get("handshake-status")
    message = str(headers.get("handshake-msg", ""))[:200]
    # As lark-oapi reads them: forbidden, or too many connections, cannot be fixed by retrying.
    too_many = status == str(AUTH_FAILED) and headers.get("handshake-autherrcode") == str(EXCEED_CONN_LIMIT)
    if status == str(FORBIDDEN) or too_many:
        return ConnectionRefused(
            f"Feishu refused the long connection handshake ({status}: {message}); check the app's "
            "permissions and its number of connections (at most 50 per app)"
        )
    return ConnectionUnavailable(f"the WebSocket handshake failed: HTTP {exc.status} {message}".rstrip())
