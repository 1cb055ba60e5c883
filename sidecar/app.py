"""The composition root: builds the admin app, whose cleanup contexts own the proxy and its resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from servicekit.logs import AccessLog
from servicekit.tracing import create_tracer_provider
from sidecar import __version__
from sidecar.admin import json_errors, setup_routes
from sidecar.canary import CanarySplit
from sidecar.credentials import ApiKeys
from sidecar.health import Prober, UpstreamHealth
from sidecar.keys import (
    health_key,
    limiter_key,
    metrics_key,
    probers_key,
    proxy_key,
    public_port_key,
    rules_key,
    settings_key,
    tracing_key,
)
from sidecar.metrics import SidecarMetrics
from sidecar.proxy import Proxy
from sidecar.ratelimit import RateLimiter
from sidecar.rules import Rule, load_rules
from sidecar.settings import Settings, origin_address
from sidecar.tracing import Tracing
from sidecar.upstream import UpstreamPool

log = logging.getLogger("sidecar")


def upstream_urls(settings: Settings) -> dict[str, str]:
    """The upstreams by their metric label: `stable`, and `canary` when a canary is configured."""
    urls = {"stable": settings.sidecar_upstream}
    if settings.canary_enabled:
        assert settings.sidecar_canary_upstream is not None
        urls["canary"] = settings.sidecar_canary_upstream
    return urls


def create_app(
    settings: Settings, *, rules: tuple[Rule, ...] | None = None, registry: CollectorRegistry | None = None
) -> web.Application:
    """Build the sidecar; without `rules` the file SIDECAR_RATE_LIMITS names is read (errors surface here)."""
    if rules is None:
        rules = load_rules(settings.sidecar_rate_limits)
    app = web.Application(middlewares=[json_errors])
    app[settings_key] = settings
    app[rules_key] = rules
    app[metrics_key] = SidecarMetrics(
        registry, upstreams=tuple(upstream_urls(settings)), rules=tuple(rule.name for rule in rules),
        default_collectors=registry is None,
    )
    app.cleanup_ctx.append(_tracing)
    app.cleanup_ctx.append(_rate_limiter)
    app.cleanup_ctx.append(_health_probes)
    app.cleanup_ctx.append(_public_listener)
    setup_routes(app)
    return app


async def _tracing(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    provider = None
    if settings.otel_exporter_otlp_endpoint:
        provider = create_tracer_provider(
            settings.sidecar_service_name, __version__, settings.otel_exporter_otlp_endpoint,
            settings.otel_traces_sampler_arg,
        )
    app[tracing_key] = Tracing(settings.otel_traces_sampler_arg, provider)
    yield
    if provider is not None:
        provider.shutdown()


async def _rate_limiter(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    redis_url = settings.sidecar_redis_url.get_secret_value() if settings.sidecar_redis_url else None
    limiter = RateLimiter(
        app[rules_key], app[metrics_key], redis_url=redis_url, redis_timeout=settings.sidecar_redis_timeout,
        api_keys=ApiKeys.from_settings(
            tuple(key.get_secret_value() for key in settings.bot_api_key), settings.sidecar_api_key_hashes,
        ),
    )
    app[limiter_key] = limiter
    try:
        yield
    finally:
        await limiter.close()


async def _health_probes(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    metrics = app[metrics_key]
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:
        health: dict[str, UpstreamHealth] = {}
        probers: dict[str, Prober] = {}
        for name, url in upstream_urls(settings).items():
            state = UpstreamHealth(name, settings.sidecar_probe_failures, settings.sidecar_probe_successes, metrics)
            health[name] = state
            probers[name] = Prober(
                state, url, settings.sidecar_probe_path, settings.sidecar_probe_interval,
                settings.sidecar_probe_timeout, metrics, client,
            )
        first = await asyncio.gather(*(prober.probe() for prober in probers.values()))
        for (name, prober), healthy in zip(probers.items(), first):
            prober.health.set_initial(healthy)
            if not healthy:
                log.warning("upstream %s (%s) does not answer its probe yet", name, prober.url)
        app[health_key] = health
        app[probers_key] = probers
        tasks = [asyncio.create_task(prober.run(), name=f"probe-{name}") for name, prober in probers.items()]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _public_listener(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    loop = asyncio.get_running_loop()
    pools = {}
    for name, url in upstream_urls(settings).items():
        host, port = origin_address(url)
        pools[name] = UpstreamPool(
            name, host, port, max_idle=settings.sidecar_pool_size, idle_timeout=settings.sidecar_upstream_idle_timeout,
            connect_timeout=settings.sidecar_connect_timeout, loop=loop,
        )
    limiter = app[limiter_key]
    access_log = AccessLog(settings.sidecar_service_name, __version__, "sidecar.access")
    proxy = Proxy(
        metrics=app[metrics_key],
        pools=pools,
        health=app[health_key],
        tracing=app[tracing_key],
        limiter=limiter if limiter.rules else None,
        canary=CanarySplit(settings.sidecar_canary_percent) if settings.canary_enabled else None,
        access_log=access_log if settings.sidecar_access_log and access_log.enabled else None,
        trusted_proxies=settings.sidecar_trusted_proxies,
        max_body=settings.sidecar_max_body_bytes,
        max_buffered=settings.sidecar_max_buffered_bytes,
        max_in_flight=settings.sidecar_max_in_flight,
        read_timeout=settings.sidecar_read_timeout,
        client_timeout=settings.sidecar_client_timeout,
        header_timeout=settings.sidecar_header_timeout,
        body_timeout=settings.sidecar_body_timeout,
        max_connections=settings.sidecar_max_connections,
        max_connections_per_client=settings.sidecar_max_connections_per_client,
        retry_after_down=app[probers_key]["stable"].retry_after,
        loop=loop,
    )
    app[proxy_key] = proxy
    app[public_port_key] = await proxy.start(settings.sidecar_host, settings.sidecar_port)
    try:
        yield
    finally:
        await proxy.close(settings.sidecar_shutdown_timeout)
