"""A local server speaking the OpenAI chat-completions protocol, with latency and faults on demand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeModel:
    """Scripted behaviour: `faults` are consumed one per request (status code or "timeout")."""

    latency: float = 0.0
    faults: list[int | str] = field(default_factory=list)
    retry_after: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)

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
        return web.json_response(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
            }
        )


def main() -> None:
    """Run standalone (`python -m tests.support.fake_model PORT LATENCY`) for process-level tests."""
    import sys

    port = int(sys.argv[1])
    latency = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    web.run_app(FakeModel(latency=latency).app(), host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
