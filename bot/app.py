"""The composition root: the only place that chooses implementations and wires them together."""

from __future__ import annotations

import time
import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from bot import __version__
from bot.backends.base import ModelBackend
from bot.backends.builtin import BuiltinBackend
from bot.backends.circuit import CircuitBreaker
from bot.backends.openai_compat import OpenAICompatBackend
from bot.conversation import Conversation
from bot.delivery.base import InboundQueue
from bot.delivery.retry import RetryPolicy
from bot.delivery.shaping import OutboundShaper
from bot.delivery.store import open_inbound_queue
from bot.delivery.worker import DeliveryWorkers
from bot.errors import ConfigError
from bot.health import Readiness
from bot.http.limits import body_deadline_middleware
from bot.http.middlewares import error_middleware, request_id_middleware, telemetry_middleware
from bot.http.routes import setup_routes
from bot.http.webhooks import setup_webhook_routes
from bot.intake import Intake
from bot.keys import (
    access_log_key,
    alert_sink_key,
    adapters_key,
    intake_key,
    queue_key,
    workers_key,
    backend_key,
    conversation_key,
    http_client_key,
    metrics_key,
    readiness_key,
    route_platforms_key,
    sessions_key,
    settings_key,
    started_at_key,
    tracer_key,
)
from bot.messages import InboundMessage
from bot.platforms.base import EnabledPlatform, GroupRobot, PlatformAdapter, PlatformDeps
from bot.platforms.registry import discover_plugins
from bot.sessions.base import SessionStore
from bot.sessions.memory import MemorySessionStore
from bot.settings import Settings
from bot.telemetry.logs import AccessLog
from bot.telemetry.metrics import BotMetrics
from bot.telemetry.tracing import create_tracer_provider


def create_app(
    settings: Settings,
    *,
    platforms: Mapping[str, EnabledPlatform] | None = None,
    backend: ModelBackend | None = None,
    sessions: SessionStore | None = None,
    queue: InboundQueue | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """Build the bot; tests pass their own platforms, backend, stores or metrics registry."""
    platforms = dict(platforms or {})
    # Telemetry (outermost, so every answer is counted) also assigns the request id; without it
    # a lighter middleware does only that.
    middlewares = [telemetry_middleware if settings.telemetry_enabled else request_id_middleware, error_middleware]
    middlewares.append(body_deadline_middleware(settings.bot_read_timeout))
    app = web.Application(middlewares=middlewares, client_max_size=settings.bot_max_body_bytes)
    app[settings_key] = settings
    app[metrics_key] = BotMetrics(registry, default_collectors=registry is None)
    app[started_at_key] = time.monotonic()
    app[route_platforms_key] = {}
    app[readiness_key] = Readiness()
    app[access_log_key] = AccessLog(settings.otel_service_name, __version__)

    app.cleanup_ctx.append(_tracing)
    app.cleanup_ctx.append(_http_client)
    app.cleanup_ctx.append(_session_store(sessions))
    app.cleanup_ctx.append(_model_backend(backend))
    app.cleanup_ctx.append(_conversation)
    app.cleanup_ctx.append(_inbound_queue(queue))
    app.cleanup_ctx.append(_platforms(platforms))
    if settings.alerts_webhook_url is not None:
        app[alert_sink_key] = _group_robot(settings.alerts_platform)
    setup_routes(app)
    setup_webhook_routes(app, platforms)
    return app


def _group_robot(platform: str | None) -> GroupRobot:
    """The group-robot sender of the platform named by ALERTS_PLATFORM, checked at start-up."""
    plugins = discover_plugins()
    robots = sorted(name for name, plugin in plugins.items() if plugin.group_robot is not None)
    plugin = plugins.get(platform or "")
    if plugin is None or plugin.group_robot is None:
        raise ConfigError(f"ALERTS_PLATFORM must be one of {', '.join(robots) or '(none installed)'}")
    return plugin.group_robot


async def _tracing(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    provider = create_tracer_provider(
        settings.otel_service_name, __version__, settings.otel_exporter_otlp_endpoint, settings.otel_traces_sampler_arg
    )
    app[tracer_key] = provider.get_tracer("bot", __version__)
    yield
    # Flushes spans still buffered for export.
    provider.shutdown()


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=200, limit_per_host=100, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector, raise_for_status=False) as client:
        app[http_client_key] = client
        yield


CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def _session_store(given: SessionStore | None) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[settings_key]
        if given is not None:
            app[sessions_key] = given
            yield
            return
        if settings.redis_url is None:
            memory = MemorySessionStore(settings.session_ttl_seconds, settings.session_max_entries)
            app[metrics_key].sessions_active.set_function(lambda: len(memory))
            app[sessions_key] = memory
            yield
            return
        from bot.redis_pool import redis_client
        from bot.sessions.redis import RedisSessionStore

        client = redis_client(settings.redis_url.get_secret_value())
        store = RedisSessionStore(client, settings.session_ttl_seconds)
        app[sessions_key] = store
        app[readiness_key].add("redis", store.check)
        try:
            yield
        finally:
            await client.aclose()

    return ctx


def _model_backend(given: ModelBackend | None) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[settings_key]
        backend: ModelBackend
        if given is not None:
            backend = given
        elif settings.model_endpoint:
            api_key = settings.model_api_key.get_secret_value() if settings.model_api_key else None
            backend = OpenAICompatBackend(
                app[http_client_key],
                settings.model_endpoint,
                api_key,
                settings.model_name,
                max_token_limit=settings.max_token_limit,
                timeout=settings.model_timeout,
                connect_timeout=settings.model_connect_timeout,
                max_retries=settings.model_max_retries,
                retry_max_delay=settings.model_retry_max_delay,
                breaker=CircuitBreaker(settings.model_breaker_failures, settings.model_breaker_reset),
            )
            app[readiness_key].add("model", backend.check)
            breaker = backend.breaker
            app[metrics_key].model_circuit_open.labels(backend.name).set_function(lambda: float(breaker.is_open))
        else:
            backend = BuiltinBackend()
        app[backend_key] = backend
        yield

    return ctx


async def _conversation(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    app[conversation_key] = Conversation(
        app[sessions_key],
        app[backend_key],
        app[metrics_key],
        app[tracer_key],
        max_turns=settings.session_max_turns,
    )
    yield


def _inbound_queue(given: InboundQueue | None) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[settings_key]
        queue = given if given is not None else await open_inbound_queue(settings)
        app[queue_key] = queue
        app[readiness_key].add("queue", queue.check)
        try:
            yield
        finally:
            await queue.close()

    return ctx


def _platforms(platforms: Mapping[str, EnabledPlatform]) -> CleanupCtx:
    """Create each enabled adapter, then the intake and the delivery workers that use them."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[settings_key]
        async def submit(platform: str, messages: Sequence[InboundMessage]) -> int:
            return await app[intake_key].submit(platform, messages)

        deps = PlatformDeps(
            http=app[http_client_key], max_skew_seconds=settings.signature_max_skew_seconds, clock=time.time,
            submit=submit, metrics=app[metrics_key],
            redis_url=settings.redis_url.get_secret_value() if settings.redis_url is not None else None,
        )
        adapters: dict[str, PlatformAdapter] = {}
        for name, enabled in platforms.items():
            created = enabled.plugin.create(enabled.settings, deps)
            adapters[name] = await created if inspect.isawaitable(created) else created
        app[adapters_key] = adapters
        # Replicas share the platforms' sending budgets through Redis; one process keeps them in memory.
        shaper = (OutboundShaper.in_memory() if settings.redis_url is None
                  else OutboundShaper.in_redis(settings.redis_url.get_secret_value()))
        workers = DeliveryWorkers(
            app[queue_key], adapters, app[conversation_key], app[metrics_key], app[tracer_key],
            policy=RetryPolicy(
                settings.delivery_max_attempts, settings.delivery_backoff_base, settings.delivery_backoff_max
            ),
            concurrency=settings.bot_workers,
            lease_seconds=settings.delivery_lease_seconds,
            shaper=shaper,
        )
        app[workers_key] = workers
        app[intake_key] = Intake(app[queue_key], app[metrics_key], workers.notify)
        workers.start()
        for name, adapter in adapters.items():
            start = getattr(adapter, "start", None)
            if start is not None:
                await start()
            check = getattr(adapter, "check", None)
            if check is not None:
                # A platform with its own connection (QQ's gateway) is part of readiness.
                app[readiness_key].add(f"platform:{name}", check)
        try:
            yield
        finally:
            await workers.stop(settings.bot_shutdown_timeout)
            await shaper.close()
            for adapter in adapters.values():
                close = getattr(adapter, "close", None)
                if close is not None:
                    await close()

    return ctx
