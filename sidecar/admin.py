"""The admin port: metrics, the sidecar's own liveness, and readiness (the stable upstream is up)."""

from __future__ import annotations

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.aiohttp import make_aiohttp_handler

from sidecar.keys import health_key, metrics_key, probers_key


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """Liveness: the event loop answers; says nothing about the upstream."""
    return _json({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """200 while the stable upstream is up, else 503: take this sidecar out of rotation."""
    states = {name: "up" if state.up else "down" for name, state in request.app[health_key].items()}
    if states.get("stable") == "up":
        return _json({"status": "ready", "upstreams": states})
    retry = request.app[probers_key]["stable"].retry_after
    return _json({"status": "unavailable", "upstreams": states}, 503, {"Retry-After": str(retry)})


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and wrong methods get the same JSON error shape as everything else."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return _json({"error": {"code": code, "message": exc.reason.lower()}}, exc.status)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/sidecar/health", health)
    app.router.add_get("/sidecar/ready", ready)
    app.router.add_get("/metrics", make_aiohttp_handler(app[metrics_key].registry))
