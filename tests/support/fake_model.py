"""A local server speaking the OpenAI chat-completions protocol, with latency and faults on demand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class FakeModel:
    """Scripted behaviour: `faults` are consumed one per request (status code or "timeout").

    A request with `stream: true` is answered as server-sent events, one word a chunk, then a
    usage chunk (when `stream_options.include_usage` asks) and `[DONE]`. `stream_faults`, one per
    streamed request, break it after the first chunk: "cut" drops the connection, "stall" goes
    silent, "error" sends an error event. While `gate` is set and not yet released, the stream
    waits after its first chunk: a test can see what arrived before the model finished.
    """

    latency: float = 0.0
    faults: list[int | str] = field(default_factory=list)
    retry_after: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    chunk_delay: float = 0.0
    first_token_delay: float = 0.0
    stream_faults: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    streams_finished: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.auth_headers.append(request.headers.get("Authorization"))
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "timeout":
                await asyncio.sleep(3600)
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.json_response({"error": {"message": "scripted fault"}}, status=int(fault), headers=headers)
        last = body["messages"][-1]["content"]
        users = sum(1 for m in body["messages"] if m["role"] == "user")
        text = f"model reply {users}: {last}"
        if body.get("stream"):
            return await self._stream(request, body, text)
        return web.json_response(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
            }
        )


    async def _stream(self, request: web.Request, body: dict[str, Any], text: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        fault = self.stream_faults.pop(0) if self.stream_faults else None

        async def send(chunk: dict[str, Any] | str) -> None:
            data = chunk if isinstance(chunk, str) else orjson.dumps(chunk).decode()
            await resp.write(f"data: {data}\n\n".encode())

        def delta(content: str, finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": body.get("model"),
                    "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}

        if self.first_token_delay:
            await asyncio.sleep(self.first_token_delay)
        await resp.write(b": keep-alive\n\n")
        await send({"id": "chatcmpl-test", "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        words = text.split(" ")
        for i, word in enumerate(words):
            await send(delta(word if i == 0 else " " + word))
            if i == 0:
                if fault == "cut":
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if fault == "stall":
                    await asyncio.sleep(3600)
                if fault == "error":
                    await send({"error": {"message": "scripted fault", "type": "server_error"}})
                    return resp
                if self.gate is not None:
                    await self.gate.wait()
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await send(delta("", "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await send({"id": "chatcmpl-test", "object": "chat.completion.chunk", "choices": [],
                        "usage": {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}})
        await send("[DONE]")
        await resp.write_eof()
        self.streams_finished += 1
        return resp


def main() -> None:
    """Run standalone (`python -m tests.support.fake_model PORT LATENCY`) for process-level tests."""
    import sys

    port = int(sys.argv[1])
    latency = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    chunk_delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    model = FakeModel(latency=latency, chunk_delay=chunk_delay)
    web.run_app(model.app(), host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
