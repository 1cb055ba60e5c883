"""`POST /api/v1/chat` with `"stream": true`: the answer as server-sent events while it is written."""

from __future__ import annotations

import logging
import time
from contextlib import aclosing
from typing import Any

import orjson
from aiohttp import web

from bot.errors import BotError
from bot.keys import conversation_key, metrics_key, request_id_key
from bot.messages import Completion

log = logging.getLogger("bot.http")


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    """One event on the wire: its name and a one-line JSON payload."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def stream_chat(
    request: web.Request, store_key: str, session_id: str, message: str, started: float
) -> web.StreamResponse:
    """Send `delta` events as the model writes, then `done` with the whole reply, or `error`.

    Nothing is sent before the first piece of text: a model that fails before it gets the
    ordinary JSON error with its HTTP status. After it, the status is already 200, so a failure
    becomes an `error` event with the same code the JSON error would have carried.
    """
    request_id = request[request_id_key]
    metrics = request.app[metrics_key]
    response: web.StreamResponse | None = None
    async with aclosing(request.app[conversation_key].respond_stream(store_key, message)) as stream:
        try:
            async for item in stream:
                if response is None:
                    response = await _open(request, request_id)
                    if not isinstance(item, Completion):
                        metrics.first_token.labels("api").observe(time.perf_counter() - started)
                if isinstance(item, Completion):
                    final = {"reply": item.text, "session_id": session_id, "request_id": request_id}
                    await response.write(sse_event("done", final))
                else:
                    await response.write(sse_event("delta", {"text": item}))
        except BotError as exc:
            if response is None:
                raise
            metrics.errors.labels(exc.code).inc()
            log.error("request failed mid-stream: %s", exc.code, extra={"error.code": exc.code})
            error = {"code": exc.code, "message": exc.message, "request_id": request_id}
            await response.write(sse_event("error", {"error": error}))
    if response is None:
        raise RuntimeError("the conversation ended without an answer")
    await response.write_eof()
    return response


async def _open(request: web.Request, request_id: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        # Tells nginx (deploy/) not to hold the events back in its buffer.
        "X-Accel-Buffering": "no",
        # Sent now: the telemetry middleware's copy would come after the headers left.
        "X-Request-ID": request_id,
    })
    await response.prepare(request)
    return response
