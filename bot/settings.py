"""The bot's settings: read once from the environment into one frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, IPvAnyNetwork, SecretStr, ValidationError, field_validator

from servicekit.errors import ConfigError
from servicekit.settings import EnvironSettings, check_redis_url, environ_subset, split_csv


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

    bot_trusted_proxies: tuple[IPvAnyNetwork, ...] = ("127.0.0.1/32", "::1/128")  # type: ignore[assignment]
    signature_max_skew_seconds: int = Field(300, ge=1)
    dedup_ttl_seconds: int = Field(86400, ge=60)
    bot_workers: int = Field(8, ge=1, le=256)
    delivery_max_attempts: int = Field(6, ge=1, le=50)
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

    @field_validator("bot_api_key", "bot_trusted_proxies", mode="before")
    @classmethod
    def _keys_from_csv(cls, value: object) -> object:
        return split_csv(value)

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
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be the http(s) API base, e.g. https://api.openai.com/v1")
        return value

    @property
    def api_keys(self) -> tuple[str, ...]:
        return tuple(key.get_secret_value() for key in self.bot_api_key)


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
