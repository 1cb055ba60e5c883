"""Every Prometheus metric the bot exports, declared in one place."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    gc_collector,
    platform_collector,
    process_collector,
)

from bot import __version__
from servicekit.latency import LATENCY_BUCKETS, REPLY_BUCKETS, REPLY_OVERHEAD_BUCKETS

# The platforms allow 1-5 s for an ACK; resolution below 100 ms is what the ACK SLO needs.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
# The goal is the first words within a second; a model's first token usually takes 0.2-2 s.
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)


class BotMetrics:
    """The bot's metrics, bound to one registry so tests can use a fresh one."""

    def __init__(self, registry: CollectorRegistry | None = None, *, default_collectors: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if default_collectors:
            process_collector.ProcessCollector(registry=r)
            platform_collector.PlatformCollector(registry=r)
            gc_collector.GCCollector(registry=r)
        self.requests = Counter(
            "bot_requests", "HTTP requests answered by the bot.",
            ("platform", "route", "method", "status"), registry=r,
        )
        self.request_duration = Histogram(
            "bot_request_duration_seconds", "Time from request received to response sent.",
            ("platform", "route"), buckets=LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("bot_requests_in_flight", "Requests being handled now.", registry=r)
        self.errors = Counter("bot_errors", "Error responses by stable error code.", ("code",), registry=r)
        self.webhook_rejected = Counter(
            "bot_webhook_rejected", "Platform callbacks refused, by reason.", ("platform", "reason"), registry=r,
        )
        self.duplicates = Counter(
            "bot_duplicates", "Platform callbacks recognised as re-deliveries.", ("platform",), registry=r,
        )
        self.ack_duration = Histogram(
            "bot_ack_duration_seconds", "Time from callback received to acknowledgement sent.",
            ("platform",), buckets=ACK_BUCKETS, registry=r,
        )
        self.reply_duration = Histogram(
            "bot_reply_duration_seconds", "Time from callback received to reply delivered.",
            ("platform",), buckets=REPLY_BUCKETS, registry=r,
        )
        self.reply_overhead = Histogram(
            "bot_reply_overhead_seconds",
            "Time from callback received to reply delivered, less the model call: queue wait, sessions and send.",
            ("platform",), buckets=REPLY_OVERHEAD_BUCKETS, registry=r,
        )
        self.model_in_flight = Gauge(
            "bot_model_requests_in_flight", "Model calls in progress now.", ("backend",), registry=r,
        )
        self.model_concurrency_limit = Gauge(
            "bot_model_concurrency_limit", "Model calls allowed in flight at once (MODEL_MAX_CONCURRENCY).",
            ("backend",), registry=r,
        )
        self.model_requests = Counter(
            "bot_model_requests", "Model calls by backend and outcome.", ("backend", "outcome"), registry=r,
        )
        self.model_duration = Histogram(
            "bot_model_duration_seconds", "Model call latency, retries included.",
            ("backend",), buckets=LATENCY_BUCKETS, registry=r,
        )
        self.model_first_token = Histogram(
            "bot_model_first_token_seconds", "Time from a streamed model call's start to its first token, retries "
            "and failover included, by the backend that answered.", ("backend",), buckets=FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "bot_first_token_seconds", "Time from a request or callback received to the first words of a streamed "
            "answer sent (platform is api for the chat API).", ("platform",), buckets=FIRST_TOKEN_BUCKETS, registry=r,
        )
        self.model_tokens = Counter(
            "bot_model_tokens", "Tokens used, by kind (prompt or completion).", ("backend", "kind"), registry=r,
        )
        self.model_failovers = Counter(
            "bot_model_failovers", "Model calls passed on to the next endpoint after this one failed.",
            ("backend",), registry=r,
        )
        self.model_circuit_open = Gauge(
            "bot_model_circuit_open", "1 while the model circuit breaker is open.", ("backend",), registry=r,
        )
        self.queue_depth = Gauge("bot_queue_depth", "Items waiting in a queue.", ("queue",), registry=r)
        self.queue_persistence = Gauge(
            "bot_queue_persistence",
            "1 for how the queue store keeps messages across its own restart: wal (SQLite), aof, rdb, aof+rdb, "
            "none or unknown (Redis).", ("store", "mode"), registry=r,
        )
        self.queue_oldest_age = Gauge(
            "bot_queue_oldest_age_seconds", "Age of the oldest message due and waiting to be picked up (0 when none).",
            ("queue",), registry=r,
        )
        self.delivery_attempts = Counter(
            "bot_delivery_attempts", "Reply delivery attempts by outcome.", ("platform", "outcome"), registry=r,
        )
        self.outbound_shaped = Counter(
            "bot_outbound_shaped", "Replies held back in the queue until the platform's sending budget has room.",
            ("platform",), registry=r,
        )
        self.dead_letters = Counter(
            "bot_dead_letters", "Replies given up on after the last attempt.", ("platform",), registry=r,
        )
        self.alerts_forwarded = Counter(
            "bot_alerts_forwarded", "Alertmanager notifications forwarded to an IM group.",
            ("platform", "outcome"), registry=r,
        )
        self.sessions_active = Gauge("bot_sessions_active", "Sessions held in memory.", registry=r)
        # Platforms whose messages arrive over a connection the bot holds (DingTalk Stream, Feishu
        # long connection): a connection that looks open but delivers nothing is the failure to catch.
        self.connection_up = Gauge(
            "bot_platform_connection_up", "1 while the platform connection is open and answering.",
            ("platform",), registry=r,
        )
        self.connection_standby = Gauge(
            "bot_platform_connection_standby",
            "1 while this replica waits because another replica holds the platform connection.",
            ("platform",), registry=r,
        )
        self.connection_breaker_open = Gauge(
            "bot_platform_connection_breaker_open",
            "1 while reconnecting is paused after repeated failures or refused credentials.",
            ("platform",), registry=r,
        )
        self.last_frame = Gauge(
            "bot_platform_last_frame_timestamp_seconds",
            "Unix time of the last frame (message, ping or pong) received on the platform connection.",
            ("platform",), registry=r,
        )
        self.reconnects = Counter(
            "bot_platform_reconnects", "Platform connections ended and opened again, by why they ended.",
            ("platform", "reason"), registry=r,
        )
        self.build_info = Info("bot_build", "Version of the running bot.", registry=r)
        self.build_info.info({"version": __version__})
        self._request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    def observe_request(
        self, platform: str, route: str, method: str, status: int, seconds: float,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        """Count and time one request; label children are looked up once per label set."""
        key = (platform, route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(platform, route, method, str(status)),
                self.request_duration.labels(platform, route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds, exemplar)
