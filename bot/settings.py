"""The bot's settings: read once from the environment into one frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, IPvAnyNetwork, SecretStr, ValidationError, field_validator

from servicekit.errors import ConfigError
from servicekit.settings import EnvironSettings, check_redis_url, environ_subset, split_csv


def parse_horizons(value: object) -> object:
    """`qq=3600,dingtalk=5400` (seconds per platform) as a mapping; anything else passes through."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        name, sep, seconds = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected platform=seconds, got {item.strip()!r}")
        pairs[name.strip().lower()] = seconds.strip()
    return pairs


class Settings(EnvironSettings):
    """Everything the bot reads from its environment, validated at start-up."""

    bot_host: str = "127.0.0.1"
    bot_port: int = Field(18789, ge=0, le=65535)
    bot_api_key: tuple[SecretStr, ...] = ()
    bot_log_file: str | None = None
    bot_log_level: str = "INFO"
    bot_max_message_chars: int = Field(4000, ge=1)
    bot_max_body_bytes: int = Field(1024 * 1024, ge=1024)
    bot_shutdown_timeout: float = Field(10.0, ge=0)
    bot_data_dir: str = "var"
    # /ready fails below this much free space where the SQLite queue lives: a message could not be stored.
    bot_data_min_free_bytes: int = Field(16 * 1024 * 1024, ge=0)
    # Limits against slow or greedy clients (bot/http/limits.py).
    bot_max_connections: int = Field(1000, ge=1)
    bot_backlog: int = Field(1024, ge=1)
    # Longer than the keep-alive of pooled clients in front (aiohttp's 15 s), so they close first.
    bot_keepalive_timeout: float = Field(30.0, gt=0)
    bot_read_timeout: float = Field(30.0, gt=0)
    bot_max_line_size: int = Field(8190, ge=256)
    bot_max_field_size: int = Field(8190, ge=256)
    bot_max_headers: int = Field(128, ge=8)

    telemetry_enabled: bool = True
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "botwatch-bot"
    otel_traces_sampler_arg: float = Field(0.01, ge=0.0, le=1.0)

    model_endpoint: str | None = None
    model_api_key: SecretStr | None = None
    model_name: str = "gpt-4o-mini"
    max_token_limit: int = Field(2048, ge=16)
    model_timeout: float = Field(30.0, gt=0)
    model_connect_timeout: float = Field(5.0, gt=0)
    model_max_retries: int = Field(2, ge=0, le=10)
    model_retry_max_delay: float = Field(8.0, ge=0)
    model_breaker_failures: int = Field(5, ge=1)
    model_breaker_reset: float = Field(30.0, gt=0)
    # Model calls in flight at once, and the size of the model client's connection pool. An LLM
    # call waits seconds on I/O, so replies/s = this / model latency: hundreds, not a handful.
    model_max_concurrency: int = Field(256, ge=1, le=10000)
    # A platform message waits in the queue this long for a model answering 429, then gets the fallback reply.
    model_rate_limit_patience: float = Field(120.0, ge=0)
    # Fallback chain, tried in order when the primary fails: endpoints, and per endpoint a key and model
    # name (one value applies to every endpoint; names default to MODEL_NAME).
    model_fallback_endpoint: tuple[str, ...] = ()
    model_fallback_api_key: tuple[SecretStr, ...] = ()
    model_fallback_name: tuple[str, ...] = ()
    # A model endpoint that failed is passed over for this long while another one can answer.
    model_fallback_cooldown: float = Field(30.0, ge=0)

    bot_trusted_proxies: tuple[IPvAnyNetwork, ...] = ("127.0.0.1/32", "::1/128")  # type: ignore[assignment]
    signature_max_skew_seconds: int = Field(300, ge=1)
    dedup_ttl_seconds: int = Field(86400, ge=60)
    # Deprecated: read as MODEL_MAX_CONCURRENCY when that is not set (see model_concurrency).
    bot_workers: int | None = Field(None, ge=1, le=10000)
    # 0: no count limit, the retry horizon alone decides when a reply becomes a dead letter.
    delivery_max_attempts: int = Field(0, ge=0, le=10000)
    # Seconds after receipt a failed reply is still retried; per platform (`qq=3600,dingtalk=5400`)
    # on top of the built-in defaults, and never past a platform's own reply window.
    delivery_retry_horizon: float = Field(6 * 3600.0, gt=0)
    delivery_retry_horizons: dict[str, float] = Field(default_factory=dict)
    delivery_backoff_base: float = Field(1.0, gt=0)
    delivery_backoff_max: float = Field(300.0, gt=0)
    # Longer than the slowest model call plus send: a job held past it is taken over by another worker.
    delivery_lease_seconds: float = Field(120.0, gt=0)

    # Alertmanager webhook receiver: alerts go to an IM group robot of this platform.
    alerts_platform: str | None = None
    alerts_webhook_url: SecretStr | None = None
    alerts_secret: SecretStr | None = None
    alerts_receiver_token: SecretStr | None = None

    redis_url: SecretStr | None = None
    session_ttl_seconds: int = Field(1800, ge=1)
    session_max_entries: int = Field(10000, ge=1)
    session_max_turns: int = Field(20, ge=1)

    @field_validator(
        "bot_api_key", "bot_trusted_proxies", "model_fallback_endpoint", "model_fallback_api_key",
        "model_fallback_name", mode="before",
    )
    @classmethod
    def _keys_from_csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("delivery_retry_horizons", mode="before")
    @classmethod
    def _horizons_from_pairs(cls, value: object) -> object:
        return parse_horizons(value)

    @field_validator("delivery_retry_horizons")
    @classmethod
    def _horizons_positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [name for name, seconds in value.items() if not seconds > 0]
        if bad:
            raise ValueError(f"horizons must be positive seconds: {', '.join(bad)}")
        return value

    @field_validator("model_endpoint", "otel_exporter_otlp_endpoint", "bot_log_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(
        "model_api_key", "redis_url", "alerts_platform", "alerts_webhook_url", "alerts_secret",
        "alerts_receiver_token", mode="before",
    )
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        return check_redis_url(value)

    @field_validator("model_endpoint")
    @classmethod
    def _model_api_base(cls, value: str | None) -> str | None:
        if value is not None:
            check_api_base(value)
        return value

    @field_validator("model_fallback_endpoint")
    @classmethod
    def _fallback_api_bases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for endpoint in value:
            check_api_base(endpoint)
        return value

    @property
    def model_fallbacks(self) -> tuple[tuple[str, str | None, str], ...]:
        """(endpoint, api key, model name) of each fallback, in the order they are tried.

        Checked here rather than by a model validator, whose error would name no field and echo
        every setting, secrets included.
        """
        count = len(self.model_fallback_endpoint)
        for name, given in (("MODEL_FALLBACK_API_KEY", len(self.model_fallback_api_key)),
                            ("MODEL_FALLBACK_NAME", len(self.model_fallback_name))):
            if given > 1 and given != count:
                raise ConfigError(f"{name} has {given} values for {count} MODEL_FALLBACK_ENDPOINT values: "
                                  "give one value for all of them or one per endpoint")
        if count and not self.model_endpoint:
            raise ConfigError("MODEL_FALLBACK_ENDPOINT needs MODEL_ENDPOINT (the primary) to be set")

        def pick(values: tuple[str, ...], index: int, default: str | None) -> str | None:
            if not values:
                return default
            return values[index] if len(values) > 1 else values[0]

        keys = tuple(key.get_secret_value() for key in self.model_fallback_api_key)
        return tuple(
            (endpoint, pick(keys, i, None), pick(self.model_fallback_name, i, self.model_name) or self.model_name)
            for i, endpoint in enumerate(self.model_fallback_endpoint)
        )

    @property
    def model_concurrency(self) -> int:
        """MODEL_MAX_CONCURRENCY; the deprecated BOT_WORKERS stands in only when it alone is set."""
        if self.bot_workers is not None and "model_max_concurrency" not in self.model_fields_set:
            return self.bot_workers
        return self.model_max_concurrency

    @property
    def deprecations(self) -> tuple[str, ...]:
        """Settings still honoured but on their way out, each as one line for the start-up log."""
        if self.bot_workers is None:
            return ()
        if "model_max_concurrency" in self.model_fields_set:
            return (f"BOT_WORKERS is deprecated and ignored: MODEL_MAX_CONCURRENCY={self.model_max_concurrency} "
                    "bounds the model calls; remove BOT_WORKERS",)
        return (f"BOT_WORKERS is deprecated: read as MODEL_MAX_CONCURRENCY={self.bot_workers} (concurrent model "
                "calls, not a worker pool); rename it, or remove it to get the default of 256",)

    @property
    def api_keys(self) -> tuple[str, ...]:
        return tuple(key.get_secret_value() for key in self.bot_api_key)


def check_api_base(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be the http(s) API base, e.g. https://api.openai.com/v1")


def check_paths(settings: Settings) -> None:
    """Make sure the files the bot will write can be written, naming the variable when not.

    Run once at start-up (creating BOT_DATA_DIR if missing), so a bad path is one clear line
    instead of a traceback from deep in the queue or a log file that silently never appears.
    """
    if settings.redis_url is None:
        data_dir = Path(settings.bot_data_dir)
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError(f"BOT_DATA_DIR: {data_dir} is not a directory")
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"BOT_DATA_DIR: cannot create {data_dir}: {exc.strerror}") from None
        if not os.access(data_dir, os.W_OK | os.X_OK):
            raise ConfigError(f"BOT_DATA_DIR: {data_dir} is not writable")
    if settings.bot_log_file is not None:
        log_file = Path(settings.bot_log_file)
        if log_file.is_dir():
            raise ConfigError(f"BOT_LOG_FILE: {log_file} is a directory")
        if not log_file.parent.is_dir():
            raise ConfigError(f"BOT_LOG_FILE: directory {log_file.parent} does not exist")
        target = log_file if log_file.exists() else log_file.parent
        if not os.access(target, os.W_OK):
            raise ConfigError(f"BOT_LOG_FILE: {target} is not writable")


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build the settings from an environment, failing with the offending key named."""
    try:
        return Settings(**environ_subset(environ, Settings.model_fields))
    except ValidationError as exc:
        raise ConfigError.from_validation(exc) from None
