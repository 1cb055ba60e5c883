"""DingTalk Stream mode: open a connection through the gateway, answer pings, acknowledge each robot
message only once it is durably queued, and move to a new connection when DingTalk says `disconnect`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform as _platform
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from yarl import URL

from bot import __version__
from bot.platforms.http import request_json
from bot.platforms.longconn import (
    CLOSED,
    DISCONNECT,
    ConnectionRefused,
    ConnectionUnavailable,
    Ended,
    Link,
)

log = logging.getLogger("bot.platforms.dingtalk.stream")

OPEN_PATH = "/v1.0/gateway/connections/open"
BOT_MESSAGES_TOPIC = "/v1.0/im/bot/messages/get"
# After `disconnect` the old socket is still read (and its frames acknowledged) while the new one
# opens, until DingTalk closes it or this long has passed.
DRAIN_SECONDS = 15.0

# Handles one robot message body (the frame's `data`): True once it is durably queued (or is
# something never to answer), False when queueing failed and the frame must not be acknowledged.
OnMessage = Callable[[dict[str, Any]], Awaitable[bool]]


def ack_frame(message_id: object, data: str, code: int = 200, message: str = "OK") -> str:
    """The acknowledgement DingTalk expects for a frame (the shape of dingtalk_stream's AckMessage)."""
    return orjson.dumps({
        "code": code,
        "headers": {"messageId": message_id, "contentType": "application/json"},
        "message": message,
        "data": data,
    }).decode()


class DingTalkStream:
    """The Stream protocol for one app; `session` is what LongConnection keeps running."""

    def __init__(
        self, http: aiohttp.ClientSession, api_base: str, client_id: str, client_secret: str,
        on_message: OnMessage, *, ping_seconds: float,
    ) -> None:
        self.http = http
        self.api_base = api_base
        self._credentials = {"clientId": client_id, "clientSecret": client_secret}
        self.on_message = on_message
        self.ping_seconds = ping_seconds
        self._draining: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)

    async def open(self) -> URL:
        """Register the connection: the WebSocket address with its one-time ticket."""
        body = {
            **self._credentials,
            "subscriptions": [{"type": "CALLBACK", "topic": BOT_MESSAGES_TOPIC}],
            "ua": f"botwatch/{__version__} Python/{_platform.python_version()}",
            "localIp": _local_ip(),
        }
        status, data = await request_json(self.http, "POST", self.api_base + OPEN_PATH, json=body)
        endpoint, ticket = data.get("endpoint"), data.get("ticket")
        if status == 200 and isinstance(endpoint, str) and isinstance(ticket, str):
            return URL(endpoint).update_query(ticket=ticket)
        code, message = str(data.get("code", "")), str(data.get("message", ""))[:200]
        if 400 <= status < 500 and status != 429:
            raise ConnectionRefused(
                f"DingTalk refused to open a Stream connection (HTTP {status} {code}: {message}); check "
                "DINGTALK_APP_KEY and DINGTALK_APP_SECRET, and that the robot receives messages in Stream mode"
            )
        raise ConnectionUnavailable(f"connections/open answered HTTP {status} {code}: {message}")

    async def session(self, link: Link, up: Callable[[], None]) -> Ended:
        url = await self.open()
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=3.0)
        # autoping off: pongs are frames too, and the watchdog must see them.
        ws = await self.http.ws_connect(url, autoping=False, heartbeat=None, timeout=timeout)
        handed_over = False
        try:
            up()
            link.seen()
            link.spawn(self._ping(ws), "dingtalk-stream-ping")
            ended = await self._read(ws, link.seen, draining=False)
            if ended.reason == DISCONNECT:
                handed_over = True
                task = asyncio.create_task(self._drain(ws), name="dingtalk-stream-drain")
                self._draining.add(task)
                task.add_done_callback(self._draining.discard)
            return ended
        finally:
            if not handed_over:
                await ws.close()

    async def _drain(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._read(ws, lambda: None, draining=True), DRAIN_SECONDS)
        except Exception as exc:  # the old socket is going anyway
            log.info("dingtalk stream: draining the old connection ended: %s", type(exc).__name__)
        finally:
            await ws.close()

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(self.ping_seconds)
            try:
                await ws.ping()
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                return

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, seen: Callable[[], None], *, draining: bool) -> Ended:
        async for msg in ws:
            seen()
            if msg.type == aiohttp.WSMsgType.PING:
                await ws.pong(msg.data)
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                frame = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                frame = None
            if not isinstance(frame, dict) or not isinstance(frame.get("headers"), dict):
                log.warning("dingtalk stream sent a frame that is not a JSON object with headers; ignored",
                            extra={"labels.platform": "dingtalk"})
                continue
            ended = await self._frame(ws, frame, draining)
            if ended is not None:
                return ended
        return Ended(CLOSED, f"connection closed (code {ws.close_code})")

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any], draining: bool) -> Ended | None:
        kind, headers = frame.get("type"), frame["headers"]
        topic, message_id = headers.get("topic"), headers.get("messageId")
        raw = frame.get("data")
        data: str = raw if isinstance(raw, str) else "{}"
        message_id = str(message_id) if message_id is not None else ""
        if kind == "SYSTEM":
            # Every system frame is acknowledged with its data echoed (a ping's answer is its pong).
            await ws.send_str(ack_frame(message_id, data))
            if topic == "disconnect" and not draining:
                return Ended(DISCONNECT, "DingTalk asked to move to a new connection", delay="none")
            return None
        if kind == "CALLBACK" and topic == BOT_MESSAGES_TOPIC:
            try:
                body = orjson.loads(data)
            except orjson.JSONDecodeError:
                body = None
            queued = await self.on_message(body if isinstance(body, dict) else {})
            if queued:
                await ws.send_str(ack_frame(message_id, orjson.dumps({"response": None}).decode()))
            # Not acknowledged: DingTalk delivers it again, and the de-duplication answers it once.
            return None
        if kind == "EVENT":
            await ws.send_str(ack_frame(message_id, orjson.dumps({"status": "SUCCESS", "message": "success"}).decode()))
            return None
        await ws.send_str(ack_frame(message_id, orjson.dumps({"response": None}).decode(), 404, "not implement"))
        return None


def _local_ip() -> str:
    """The address DingTalk shows for the connection in its console (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
