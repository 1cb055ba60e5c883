"""The composition root: the only place that chooses implementations and wires them together."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from bot import __version__
from bot.backends.base import ModelBackend
from bot.backends.builtin import BuiltinBackend
from bot.backends.circuit import CircuitBreaker
from bot.backends.failover import FailoverBackend
from bot.backends.openai_compat import OpenAICompatBackend
from bot.conversation import Conversation
from bot.delivery.base import InboundQueue
from bot.delivery.horizon import DEFAULT_PLATFORM_HORIZONS, RetryHorizon
from bot.delivery.retry import RetryPolicy
from bot.delivery.shaping import OutboundShaper
from bot.delivery.store import open_inbound_queue
from bot.delivery.worker import DeliveryWorkers
from bot.errors import BackendError, ConfigError
from bot.health import Readiness
from bot.http.limits import body_deadline_middleware
from bot.http.middlewares import error_middleware, request_id_middleware, telemetry_middleware
from bot.http.routes import setup_routes
from bot.http.webhooks import setup_webhook_routes
from bot.intake import Intake
from bot.keys import (
    access_log_key,
    adapters_key,
    alert_sink_key,
    backend_key,
    conversation_key,
    http_client_key,
    intake_key,
    metrics_key,
    model_http_client_key,
    queue_key,
    readiness_key,
    redis_key,
    route_platforms_key,
    sessions_key,
    settings_key,
    started_at_key,
    tracer_key,
    workers_key,
)
from bot.messages import InboundMessage
from bot.platforms.base import AdapterHooks, EnabledPlatform, GroupRobot, PlatformAdapter, PlatformDeps
from bot.platforms.registry import discover_plugins
from bot.sessions.base import SessionStore
from bot.sessions.memory import MemorySessionStore
from bot.settings import Settings
from bot.telemetry.metrics import BotMetrics
from servicekit.logs import AccessLog
from servicekit.tracing import create_tracer_provider

log = logging.getLogger("bot")


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
    settings.model_fallbacks  # noqa: B018 - a fallback list that does not line up fails here, at start-up
    # Telemetry (outermost, so every answer is counted) also assigns the request id; without it
    # a lighter middleware does only that.
    middlewares: list[Middleware] = [
        telemetry_middleware if settings.telemetry_enabled else request_id_middleware, error_middleware
    ]
    middlewares.append(body_deadline_middleware(settings.bot_read_timeout))
    app = web.Application(middlewares=middlewares, client_max_size=settings.bot_max_body_bytes)
    app[settings_key] = settings
    app[metrics_key] = BotMetrics(registry, default_collectors=registry is None)
    app[started_at_key] = time.monotonic()
    app[route_platforms_key] = {}
    app[readiness_key] = Readiness()
    app[access_log_key] = AccessLog(settings.otel_service_name, __version__, "bot.access")
    app.on_cleanup.append(_flush_access_log)

    app.cleanup_ctx.append(_tracing)
    app.cleanup_ctx.append(_http_client)
    app.cleanup_ctx.append(_redis)
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


async def _flush_access_log(app: web.Application) -> None:
    app[access_log_key].flush()


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


async def _redis(app: web.Application) -> AsyncIterator[None]:
    """The process's one Redis client, shared by sessions, the queue and the sending budgets."""
    settings = app[settings_key]
    if settings.redis_url is None:
        yield
        return
    from servicekit.redis_pool import redis_client

    # Decoded replies: the queue reads strings, and sessions and budgets accept them.
    client = redis_client(settings.redis_url.get_secret_value(), max_connections=128, decode_responses=True)
    app[redis_key] = client
    try:
        yield
    finally:
        await client.aclose()


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
        from bot.sessions.redis import RedisSessionStore

        store = RedisSessionStore(app[redis_key], settings.session_ttl_seconds)
        app[sessions_key] = store
        app[readiness_key].add("redis", store.check)
        yield

    return ctx


def _model_backend(given: ModelBackend | None) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[settings_key]
        backend: ModelBackend
        if given is not None:
            backend = given
        elif settings.model_endpoint:
            api_key = settings.model_api_key.get_secret_value() if settings.model_api_key else None
            # The model gets its own pool, sized to the concurrency allowed: a shared pool's
            # per-host cap would silently cap replies/s below what the setting promises.
            limit = settings.model_concurrency
            model_http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300),
                raise_for_status=False,
            )
            app[model_http_client_key] = model_http
            metrics = app[metrics_key]
            chain: list[OpenAICompatBackend] = []
            endpoints = [(settings.model_endpoint, api_key, settings.model_name), *settings.model_fallbacks]
            for index, (endpoint, key, model_name) in enumerate(endpoints):
                endpoint_backend = OpenAICompatBackend(
                    model_http,
                    endpoint,
                    key,
                    model_name,
                    name="openai_compat" if index == 0 else f"fallback_{index}",
                    max_token_limit=settings.max_token_limit,
                    timeout=settings.model_timeout,
                    connect_timeout=settings.model_connect_timeout,
                    max_retries=settings.model_max_retries,
                    retry_max_delay=settings.model_retry_max_delay,
                    breaker=CircuitBreaker(settings.model_breaker_failures, settings.model_breaker_reset),
                )
                breaker = endpoint_backend.breaker
                metrics.model_circuit_open.labels(endpoint_backend.name).set_function(
                    lambda breaker=breaker: float(breaker.is_open)  # type: ignore[misc]
                )
                chain.append(endpoint_backend)
            if len(chain) == 1:
                backend = chain[0]
            else:
                def passed_over(name: str, exc: BackendError) -> None:
                    metrics.model_requests.labels(name, exc.code).inc()
                    metrics.model_failovers.labels(name).inc()

                backend = FailoverBackend(chain, cooldown=settings.model_fallback_cooldown, on_failover=passed_over)
            app[readiness_key].add("model", backend.check)
        else:
            backend = BuiltinBackend()
        app[backend_key] = backend
        try:
            yield
        finally:
            if model_http_client_key in app:
                await app[model_http_client_key].close()

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
        queue = given if given is not None else await open_inbound_queue(settings, redis=app.get(redis_key))
        app[queue_key] = queue
        await _report_persistence(queue, app[metrics_key])
        app[readiness_key].add("queue", queue.check)
        try:
            yield
        finally:
            await queue.close()

    return ctx


async def _report_persistence(queue: InboundQueue, metrics: BotMetrics) -> None:
    """Export how the queue survives its store's restart; warn loudly when it would not."""
    persistence = getattr(queue, "persistence", None)
    if persistence is None:
        metrics.queue_persistence.labels("sqlite", "wal").set(1)
        return
    mode, policy = await persistence()
    metrics.queue_persistence.labels("redis", mode).set(1)
    if mode == "none":
        log.error("REDIS WITHOUT PERSISTENCE: the queue's Redis has appendonly no and no save points, so a Redis "
                  "restart loses every queued message and dead letter; set appendonly yes (docs/operations.md)")
    elif mode == "rdb":
        log.warning("the queue's Redis persists by snapshots only: a Redis restart loses the messages queued since "
                    "the last one; set appendonly yes (docs/operations.md)")
    elif mode == "unknown":
        log.warning("could not read the queue's Redis persistence settings (CONFIG GET refused or no answer); "
                    "make sure it runs with appendonly yes and maxmemory-policy noeviction")
    if policy not in ("noeviction", "unknown"):
        log.error("the queue's Redis has maxmemory-policy %s: under memory pressure it deletes queued messages; "
                  "set maxmemory-policy noeviction", policy)


def _platforms(platforms: Mapping[str, EnabledPlatform]) -> CleanupCtx:
    """Create each enabled adapter, then the intake and the delivery workers that use them."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[settings_key]
        async def submit(platform: str, messages: Sequence[InboundMessage]) -> int:
            return await app[intake_key].submit(platform, messages)

        deps = PlatformDeps(
            http=app[http_client_key], max_skew_seconds=settings.signature_max_skew_seconds, clock=time.time,
            submit=submit, metrics=app[metrics_key],
            redis=app.get(redis_key),
        )
        adapters: dict[str, PlatformAdapter] = {}
        hooks: dict[str, AdapterHooks] = {}
        for name, enabled in platforms.items():
            adapters[name] = enabled.plugin.create(enabled.settings, deps)
            hooks[name] = AdapterHooks.of(name, adapters[name])
        app[adapters_key] = adapters
        # Replicas share the platforms' sending budgets through Redis; one process keeps them in memory.
        shaper = (OutboundShaper.in_memory() if settings.redis_url is None
                  else OutboundShaper.in_redis(settings.redis_url.get_secret_value(), app[redis_key]))
        workers = DeliveryWorkers(
            app[queue_key], adapters, app[conversation_key], app[metrics_key], app[tracer_key],
            # No attempt cap by default (0): the retry horizon decides, so an outage is ridden out.
            policy=RetryPolicy(
                settings.delivery_max_attempts or sys.maxsize, settings.delivery_backoff_base,
                settings.delivery_backoff_max,
            ),
            horizon=RetryHorizon(
                settings.delivery_retry_horizon, {**DEFAULT_PLATFORM_HORIZONS, **settings.delivery_retry_horizons},
            ),
            model_concurrency=settings.model_concurrency,
            lease_seconds=settings.delivery_lease_seconds,
            rate_limit_patience=settings.model_rate_limit_patience,
            shaper=shaper,
        )
        app[workers_key] = workers
        app[metrics_key].model_concurrency_limit.labels(app[backend_key].name).set(settings.model_concurrency)
        for line in settings.deprecations:
            log.warning(line)
        app[intake_key] = Intake(app[queue_key], app[metrics_key], workers.notify)
        workers.start()
        for name, hook in hooks.items():
            if hook.start is not None:
                await hook.start()
            if hook.check is not None:
                # A platform with its own connection (QQ's gateway) is part of readiness.
                app[readiness_key].add(f"platform:{name}", hook.check)
        try:
            yield
        finally:
            await workers.stop(settings.bot_shutdown_timeout)
            await shaper.close()
            for hook in hooks.values():
                if hook.close is not None:
                    await hook.close()

    return ctx
