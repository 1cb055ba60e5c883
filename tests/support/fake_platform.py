"""A local stand-in for a platform's HTTP API: records every request, answers as scripted."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    def json(self) -> Any:
        import json

        return json.loads(self.body)


Responder = Callable[[Recorded], web.Response | Awaitable[web.Response]]


@dataclass
class FakePlatformAPI:
    """Routes are registered per (method, path); unmatched requests get 404 and are still recorded.

    `faults` maps a path to a list of statuses served (one per request) before the normal answer.
    """

    responders: dict[tuple[str, str], Responder] = field(default_factory=dict)
    faults: dict[str, list[int]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    arrived: asyncio.Event | None = None

    def on(self, method: str, path: str, responder: Responder | dict[str, Any]) -> None:
        if isinstance(responder, dict):
            payload = responder
            self.responders[(method.upper(), path)] = lambda _req: web.json_response(payload)
        else:
            self.responders[(method.upper(), path)] = responder

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 10.0) -> list[Recorded]:
        """Wait until `count` requests reached `path` (no fixed sleeps)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.calls(path)) < count:
            if loop.time() > deadline:
                raise TimeoutError(f"{len(self.calls(path))}/{count} requests to {path}; saw {[r.path for r in self.requests]}")
            await asyncio.sleep(0.01)
        return self.calls(path)

    async def _handle(self, request: web.Request) -> web.Response:
        recorded = Recorded(
            request.method, request.path, dict(request.query), dict(request.headers), await request.read()
        )
        self.requests.append(recorded)
        pending = self.faults.get(request.path)
        if pending:
            status = pending.pop(0)
            return web.json_response({"error": "scripted fault"}, status=status)
        responder = self.responders.get((request.method, request.path))
        if responder is None:
            return web.json_response({"error": "no such route"}, status=404)
        response = responder(recorded)
        return await response if inspect.isawaitable(response) else response
