"""QQ's WebSocket gateway: hello, identify or resume, heartbeat at the server's interval, reconnect with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson

from bot.platforms.base import DeliveryFailed
from bot.platforms.qq.api import QQApi
from servicekit.backoff import backoff_delay

log = logging.getLogger("bot.platforms.qq.gateway")

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_RESUME = 6
OP_RECONNECT = 7
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

# Close codes. 4004: the token was refused. 9001/9005 (and 4006/4007, a session id or seq the
# server no longer knows): the session cannot be resumed. The rest in FATAL_CLOSE_CODES are
# configuration problems (shard, intents, a delisted or banned bot) that a quick retry cannot fix.
TOKEN_REFUSED_CLOSE_CODES = frozenset({4004})
SESSION_LOST_CLOSE_CODES = frozenset({4006, 4007, 9001, 9005})
FATAL_CLOSE_CODES = frozenset({4010, 4011, 4012, 4013, 4014, 4914, 4915})

# Called for every dispatched event other than READY/RESUMED with (event type, d). When it
# raises, the event's seq is not recorded, so the resume that follows makes the server replay it.
OnDispatch = Callable[[str, Any], Awaitable[None]]


class GatewayState(enum.StrEnum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    WAITING = "waiting"  # between connections, backing off


@dataclass(frozen=True, slots=True)
class _Ending:
    """Why a connection ended and how soon to open the next one."""

    why: str
    delay: Literal["none", "backoff", "max"] = "backoff"


class QQGateway:
    """One shard-0 gateway connection kept alive in a background task.

    Resumes with (session_id, seq) after a drop or op 7, so the server replays what we missed;
    identifies afresh after op 9 or a close code saying the session is gone.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        api: QQApi,
        on_dispatch: OnDispatch,
        *,
        intents: int,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        hello_timeout: float = 30.0,
    ) -> None:
        self.http = http
        self.api = api
        self.on_dispatch = on_dispatch
        self.intents = intents
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.hello_timeout = hello_timeout
        self.state = GatewayState.STOPPED
        self.session_id: str | None = None
        self.seq: int | None = None
        self._failures = 0
        self._acked = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="qq-gateway")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state(GatewayState.STOPPED)

    def snapshot(self) -> dict[str, Any]:
        """What operators need to know about the connection (no credentials)."""
        return {"state": self.state.value, "session_id": self.session_id, "seq": self.seq}

    async def _run(self) -> None:
        url: str | None = None
        while True:
            try:
                if url is None:
                    url = await self.api.gateway_url()
                ending = await self._connect_once(url)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, DeliveryFailed) as exc:
                url = None  # the address may have moved: ask for it again
                reason = exc.reason if isinstance(exc, DeliveryFailed) else type(exc).__name__
                ending = _Ending(f"gateway unreachable: {reason}")
            except Exception:
                # Whatever went wrong, a dead task would silently stop every QQ message: log and go on.
                log.exception("qq gateway connection failed unexpectedly", extra=self._log_fields())
                url = None
                ending = _Ending("unexpected error")
            delay = self._delay(ending.delay)
            self._set_state(GatewayState.WAITING)
            log.warning(
                "qq gateway connection ended: %s; %s in %.2fs", ending.why,
                "resuming" if self._resumable() else "identifying", delay, extra=self._log_fields(),
            )
            await asyncio.sleep(delay)

    async def _connect_once(self, url: str) -> _Ending:
        self._set_state(GatewayState.CONNECTING)
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=3.0)
        async with self.http.ws_connect(url, autoping=True, heartbeat=None, timeout=timeout) as ws:
            hello = await asyncio.wait_for(ws.receive(), self.hello_timeout)
            if hello.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return self._closed(ws.close_code)
            interval = _heartbeat_interval(hello)
            if interval is None:
                return _Ending("the server did not start with hello (op 10)")
            self._set_state(GatewayState.AUTHENTICATING)
            resuming = self._resumable()
            await self._send(ws, await self._resume() if resuming else await self._identify())
            reader = asyncio.create_task(self._read(ws), name="qq-gateway-read")
            heart = asyncio.create_task(self._heartbeat(ws, interval), name="qq-gateway-heartbeat")
            try:
                done, _ = await asyncio.wait({reader, heart}, return_when=asyncio.FIRST_COMPLETED)
                # The reader knows why the connection ended; the heartbeat only when it gave up first.
                return reader.result() if reader in done else heart.result()
            finally:
                # Also on cancellation (close()): neither task may outlive its connection.
                reader.cancel()
                heart.cancel()
                await asyncio.gather(reader, heart, return_exceptions=True)

    async def _identify(self) -> dict[str, Any]:
        return {"op": OP_IDENTIFY, "d": {
            "token": await self.api.authorization(),
            "intents": self.intents,
            "shard": [0, 1],
            "properties": {"$os": sys.platform, "$browser": "botwatch", "$device": "botwatch"},
        }}

    async def _resume(self) -> dict[str, Any]:
        return {"op": OP_RESUME, "d": {
            "token": await self.api.authorization(), "session_id": self.session_id, "seq": self.seq or 0,
        }}

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> _Ending:
        async for msg in ws:
            payload = _decode(msg)
            if payload is None:
                log.warning("qq gateway sent a frame that is not a JSON object; ignored", extra=self._log_fields())
                continue
            op = payload.get("op")
            if op == OP_DISPATCH:
                ending = await self._dispatch(payload)
                if ending is not None:
                    return ending
            elif op == OP_HEARTBEAT_ACK:
                self._acked = True
            elif op == OP_HEARTBEAT:
                await self._send(ws, {"op": OP_HEARTBEAT, "d": self.seq})
            elif op == OP_RECONNECT:
                return _Ending("server asked to reconnect (op 7)", delay="none")
            elif op == OP_INVALID_SESSION:
                self._forget_session()
                return _Ending("invalid session (op 9)")
        return self._closed(ws.close_code)

    async def _dispatch(self, payload: dict[str, Any]) -> _Ending | None:
        event, seq, d = payload.get("t"), payload.get("s"), payload.get("d")
        if event == "READY":
            self.session_id = str(d.get("session_id")) if isinstance(d, dict) and d.get("session_id") else None
            self._up("qq gateway ready")
        elif event == "RESUMED":
            self._up("qq gateway resumed")
        elif isinstance(event, str):
            try:
                await self.on_dispatch(event, d)
            except Exception as exc:  # whatever failed, the replay after a resume will retry it
                return _Ending(f"event {event} (seq {seq}) not queued: {type(exc).__name__}; it will be replayed")
        if isinstance(seq, int) and not isinstance(seq, bool):
            self.seq = seq
        return None

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse, interval: float) -> _Ending:
        self._acked = True
        while True:
            await asyncio.sleep(interval)
            if not self._acked:
                # A connection that stopped answering is dead even if TCP has not noticed yet.
                return _Ending("heartbeat not acknowledged")
            self._acked = False
            await self._send(ws, {"op": OP_HEARTBEAT, "d": self.seq})

    def _closed(self, code: int | None) -> _Ending:
        if code in TOKEN_REFUSED_CLOSE_CODES:
            self.api.tokens.invalidate()
            return _Ending(f"closed with code {code}: access token refused, fetching a new one")
        if code in SESSION_LOST_CLOSE_CODES:
            self._forget_session()
            return _Ending(f"closed with code {code}: session cannot be resumed")
        if code in FATAL_CLOSE_CODES:
            log.error("qq gateway refused the bot (close code %s): check the intents and the bot's status "
                      "in the QQ console", code, extra=self._log_fields())
            return _Ending(f"closed with code {code}", delay="max")
        return _Ending(f"connection closed (code {code})")

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, payload: dict[str, Any]) -> None:
        await ws.send_str(orjson.dumps(payload).decode())

    def _resumable(self) -> bool:
        return self.session_id is not None

    def _forget_session(self) -> None:
        self.session_id, self.seq = None, None

    def _up(self, message: str) -> None:
        self._failures = 0
        self._set_state(GatewayState.READY)
        log.info(message, extra=self._log_fields())

    def _delay(self, kind: Literal["none", "backoff", "max"]) -> float:
        if kind == "none":
            return 0.0
        if kind == "max":
            return self.backoff_max
        attempt, self._failures = self._failures, self._failures + 1
        # Never below half the step, yet jittered: many bots restarting together spread out.
        return backoff_delay(attempt, self.backoff_base, self.backoff_max, least=0.5)

    def _set_state(self, state: GatewayState) -> None:
        self.state = state

    def _log_fields(self) -> dict[str, Any]:
        return {
            "labels.platform": "qq", "labels.gateway_state": self.state.value,
            "labels.session_id": self.session_id or "", "labels.seq": self.seq,
        }


def _decode(msg: aiohttp.WSMessage) -> dict[str, Any] | None:
    if msg.type != aiohttp.WSMsgType.TEXT:
        return None
    try:
        payload = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def _heartbeat_interval(msg: aiohttp.WSMessage) -> float | None:
    """Seconds between heartbeats as op 10 (hello) states them in milliseconds; None if not a hello."""
    payload = _decode(msg)
    d = payload.get("d") if payload is not None and payload.get("op") == OP_HELLO else None
    interval = d.get("heartbeat_interval") if isinstance(d, dict) else None
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
        return None
    return float(interval) / 1000.0
