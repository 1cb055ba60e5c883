"""Request middlewares: request ids, telemetry (outermost), and the one place errors become JSON."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from bot.errors import BotError, WebhookRejected, status_of
from bot.http.client_address import client_ip
from bot.http.responses import error_response
from bot.keys import access_log_key, metrics_key, request_id_key, route_platforms_key, tracer_key
from servicekit.ids import is_safe_id
from servicekit.tracing import extract_context

log = logging.getLogger("bot.http")
# nginx's status for a request the client abandoned: counted apart, outside the 5xx error ratio.
CLIENT_CLOSED_REQUEST = 499
# aiohttp's own HTTP errors, named like ours so clients see one vocabulary.
_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "request_timeout", 411: "length_required",
    413: "payload_too_large", 414: "uri_too_long", 415: "unsupported_media_type",
    431: "headers_too_large",
}


def route_of(request: web.Request) -> tuple[str, str]:
    """The (platform, route template) labels for a request; never the raw path."""
    resource = request.match_info.route.resource
    if resource is None:
        return "system", "unmatched"
    canonical = resource.canonical
    return request.app[route_platforms_key].get(canonical, "system"), canonical


def incoming_request_id(request: web.Request) -> str | None:
    """A caller's X-Request-ID when it is sane enough to log and echo."""
    incoming = request.headers.get("X-Request-ID")
    return incoming if incoming and is_safe_id(incoming) else None


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With telemetry off: keep a sane incoming X-Request-ID or mint one, and echo it."""
    request_id = incoming_request_id(request) or f"{random.getrandbits(128):032x}"
    request[request_id_key] = request_id
    response = await handler(request)
    response.headers["X-Request-ID"] = request_id
    return response


@web.middleware
async def telemetry_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One server span, the RED metrics and one ECS access-log line per request.

    Without a caller's X-Request-ID the trace id doubles as the request id, so an id a user
    reports leads straight to the trace and every log line of the request.
    """
    app = request.app
    platform, route = route_of(request)
    started = time.perf_counter()
    span = app[tracer_key].start_span(
        f"{request.method} {route}", context=extract_context(request.headers), kind=SpanKind.SERVER
    )
    span_context = span.get_span_context()
    ids = (f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}")
    request_id = incoming_request_id(request) or ids[0]
    request[request_id_key] = request_id
    token = otel_context.attach(trace.set_span_in_context(span))
    metrics = app[metrics_key]
    metrics.in_flight.inc()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    except asyncio.CancelledError:
        # The client went away; nginx's convention makes it visible without calling it a server error.
        status = CLIENT_CLOSED_REQUEST
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics.in_flight.dec()
        metrics.observe_request(
            platform, route, request.method, status, elapsed,
            {"trace_id": ids[0]} if span_context.trace_flags.sampled else None,
        )
        if span.is_recording():
            span.set_attribute("client.address", client_ip(request))
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
        access_log = app[access_log_key]
        probe = platform == "system" and status < 400 and route != "unmatched"
        skipped = access_log.probes.admit(route, started) if probe else 0
        if access_log.enabled and skipped is not None:
            more = f" (and {skipped} more since the last line)" if skipped else ""
            access_log.write(
                f"{request.method} {request.path} {status}{more}",
                {
                    "http": {
                        "request": {"method": request.method, "id": request_id},
                        "response": {"status_code": status},
                    },
                    "url": {"path": request.path},
                    "event": {"duration": int(elapsed * 1e9)},
                    "client": {"ip": client_ip(request)},
                    "labels": {"platform": platform, "route": route},
                },
                ids,
            )
        span.end()
        otel_context.detach(token)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into `{"error": {...}}` JSON with the right status; never leak a traceback."""
    try:
        return await handler(request)
    except BotError as exc:
        return _render(request, exc.code, exc.message, status_of(exc), exc.headers(), exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return _render(request, code, exc.reason.lower(), exc.status, headers, None)
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:
        if not _client_gone(request):
            log.exception("unhandled error on %s %s", request.method, route_of(request)[1])
            return _render(request, "internal_error", "internal error", 500, {}, None)
        # The caller left mid-request (or a proxy refused its body): nginx's 499, not a server error,
        # so no client can burn the availability budget or raise an alert by hanging up.
        log.info("client closed the request on %s %s", request.method, route_of(request)[1])
        return web.Response(status=CLIENT_CLOSED_REQUEST)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, route_of(request)[1])
        return _render(request, "internal_error", "internal error", 500, {}, None)


def _client_gone(request: web.Request) -> bool:
    """True when this request's own connection is lost (not an outbound one reset under it)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _render(
    request: web.Request, code: str, message: str, status: int, headers: dict[str, str], exc: BotError | None
) -> web.Response:
    metrics = request.app[metrics_key]
    metrics.errors.labels(code).inc()
    if isinstance(exc, WebhookRejected):
        platform = route_of(request)[0]
        metrics.webhook_rejected.labels(platform, exc.reason).inc()
        log.warning(
            "webhook rejected: %s", exc.reason,
            extra={"labels.platform": platform, "labels.reason": exc.reason, "client.ip": client_ip(request)},
        )
    elif status >= 500:
        log.error("request failed: %s", code, extra={"error.code": code})
    return error_response(code, message, status, headers, request.get(request_id_key))
