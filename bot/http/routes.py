"""The bot's HTTP surface, and which platform label each route reports under."""

from __future__ import annotations

from aiohttp import web

from bot.http import alerts, chat, health, openapi
from bot.keys import route_platforms_key, settings_key


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/health", health.health)
    app.router.add_route("GET", "/api/health", health.api_health)
    # The guides check health with `curl -X POST .../api/health`; both verbs answer the same.
    app.router.add_route("POST", "/api/health", health.api_health)
    app.router.add_get("/ready", health.ready)
    app.router.add_get("/metrics", health.metrics_handler(app))
    app.router.add_post("/api/v1/chat", chat.chat)
    app.router.add_get("/openapi.json", openapi.openapi_document)
    app[route_platforms_key]["/api/v1/chat"] = "api"
    if app[settings_key].alerts_webhook_url is not None:
        app.router.add_post("/alerts/alertmanager", alerts.alertmanager)
        app[route_platforms_key]["/alerts/alertmanager"] = "alerts"
