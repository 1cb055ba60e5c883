"""aiohttp glue for platform callbacks: build a WebhookRequest, run the intake, time the ACK."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from bot.errors import WebhookRejected
from bot.http.client_address import client_ip
from bot.keys import adapters_key, intake_key, metrics_key, route_platforms_key
from bot.platforms.base import EnabledPlatform, WebhookRequest


def make_handler(name: str, enabled: EnabledPlatform) -> Handler:
    allowed_ips = enabled.settings.allowed_ips

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        app = request.app
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise WebhookRejected("too_large", "body too large", status=413) from None
        webhook_request = WebhookRequest(
            method=request.method,
            path=request.path,
            query_string=request.rel_url.raw_query_string,  # yarl's query_string turns "+" into " "
            query={k: v for k, v in request.query.items()},
            headers=CIMultiDict(request.headers),
            body=body,
            remote=client_ip(request),
            received_at=time.time(),
        )
        result = await app[intake_key].receive(app[adapters_key][name], webhook_request, allowed_ips)
        response = web.Response(status=result.status, body=result.body, headers=dict(result.headers))
        if result.body or result.content_type != "application/json":
            response.content_type = result.content_type
        app[metrics_key].ack_duration.labels(name).observe(time.perf_counter() - started)
        return response

    return handle


def setup_webhook_routes(app: web.Application, platforms: dict[str, EnabledPlatform]) -> None:
    for name, enabled in platforms.items():
        handler = make_handler(name, enabled)
        for route in enabled.plugin.routes:
            added = app.router.add_route(route.method, route.path, handler)
            assert added.resource is not None  # add_route always creates or reuses a resource
            app[route_platforms_key][added.resource.canonical] = name
