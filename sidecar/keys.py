"""Typed keys for everything the sidecar's aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from sidecar.health import Prober, UpstreamHealth
from sidecar.metrics import SidecarMetrics
from sidecar.proxy import Proxy
from sidecar.ratelimit import RateLimiter
from sidecar.rules import Rule
from sidecar.settings import Settings
from sidecar.tracing import Tracing

settings_key = web.AppKey("settings", Settings)
metrics_key = web.AppKey("metrics", SidecarMetrics)
rules_key = web.AppKey("rules", tuple[Rule, ...])
tracing_key = web.AppKey("tracing", Tracing)
limiter_key = web.AppKey("limiter", RateLimiter)
health_key = web.AppKey("health", dict[str, UpstreamHealth])
probers_key = web.AppKey("probers", dict[str, Prober])
proxy_key = web.AppKey("proxy", Proxy)
public_port_key = web.AppKey("public_port", int)
