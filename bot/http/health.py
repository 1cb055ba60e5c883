"""Liveness, health summary, readiness and metrics endpoints; none needs an API key."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.aiohttp import make_aiohttp_handler

from bot import __version__
from bot.http.responses import json_response
from bot.keys import metrics_key, readiness_key, route_platforms_key, started_at_key


async def health(request: web.Request) -> web.Response:
    """Liveness only: answers while the event loop runs, touching no dependency."""
    return web.Response(text="OK")


async def api_health(request: web.Request) -> web.Response:
    """The summary the deployment guides show: status, uptime in seconds, version."""
    platforms = sorted({p for p in request.app[route_platforms_key].values() if p not in ("api", "system")})
    return json_response(
        {
            "status": "healthy",
            "uptime": int(time.monotonic() - request.app[started_at_key]),
            "version": __version__,
            "platforms": platforms,
        }
    )


async def ready(request: web.Request) -> web.Response:
    """200 when every configured dependency answers; 503 naming those that do not."""
    failures = await request.app[readiness_key].failures()
    if failures:
        return json_response({"status": "unavailable", "failing": failures}, status=503, headers={"Retry-After": "5"})
    return json_response({"status": "ready", "checks": sorted(request.app[readiness_key].checks)})


def metrics_handler(app: web.Application) -> Handler:
    """Serve the app's registry; OpenMetrics (with exemplars) when the scraper asks for it."""
    return make_aiohttp_handler(app[metrics_key].registry)
