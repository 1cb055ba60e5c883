"""The sidecar's settings: read once from the environment into one frozen object."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator

from servicekit.addresses import IPNetwork
from servicekit.errors import ConfigError
from servicekit.settings import EnvironSettings, check_redis_url, environ_subset, split_csv
from sidecar.credentials import is_key_digest

DEFAULT_RULES = Path(__file__).with_name("ratelimits.yaml")


class Settings(EnvironSettings):
    """Everything the sidecar reads from its environment, validated at start-up."""

    sidecar_host: str = "127.0.0.1"
    sidecar_port: int = Field(8080, ge=0, le=65535)
    sidecar_admin_host: str = "127.0.0.1"
    sidecar_admin_port: int = Field(9901, ge=0, le=65535)

    sidecar_upstream: str = "http://127.0.0.1:18789"
    sidecar_canary_upstream: str | None = None
    sidecar_canary_percent: float = Field(0.0, ge=0.0, le=100.0)

    sidecar_connect_timeout: float = Field(1.0, gt=0)
    sidecar_read_timeout: float = Field(60.0, gt=0)
    sidecar_client_timeout: float = Field(75.0, gt=0)
    sidecar_header_timeout: float = Field(10.0, gt=0)
    sidecar_body_timeout: float = Field(30.0, gt=0)
    sidecar_max_connections: int = Field(4096, ge=1)
    sidecar_max_connections_per_client: int = Field(256, ge=1)
    sidecar_max_body_bytes: int = Field(1024 * 1024, ge=0)
    sidecar_max_buffered_bytes: int = Field(256 * 1024 * 1024, ge=1)
    sidecar_max_in_flight: int = Field(1024, ge=1)
    sidecar_pool_size: int = Field(128, ge=1)
    sidecar_upstream_idle_timeout: float = Field(30.0, gt=0)

    sidecar_probe_interval: float = Field(1.0, gt=0)
    sidecar_probe_timeout: float = Field(0.5, gt=0)
    sidecar_probe_path: str = "/health"
    sidecar_probe_failures: int = Field(3, ge=1)
    sidecar_probe_successes: int = Field(2, ge=1)

    sidecar_rate_limits: str | None = str(DEFAULT_RULES)
    sidecar_redis_url: SecretStr | None = None
    sidecar_redis_timeout: float = Field(0.25, gt=0)
    # The bot's keys (the same variable the bot reads) or only their SHA-256 digests: which
    # credentials are real, so that only those get a rate-limit budget of their own.
    bot_api_key: tuple[SecretStr, ...] = ()
    sidecar_api_key_hashes: tuple[str, ...] = ()
    sidecar_trusted_proxies: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )

    sidecar_access_log: bool = True
    sidecar_log_level: str = "INFO"
    sidecar_log_file: str | None = None
    sidecar_shutdown_timeout: float = Field(10.0, ge=0)
    sidecar_service_name: str = "botwatch-sidecar"
    otel_exporter_otlp_endpoint: str | None = None
    otel_traces_sampler_arg: float = Field(0.01, ge=0.0, le=1.0)

    @field_validator("sidecar_upstream", "sidecar_canary_upstream")
    @classmethod
    def _plain_http_origin(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError("must be an http://host:port origin without a path")
        parts.port  # noqa: B018 - raises ValueError on a malformed port
        return value

    @field_validator("sidecar_redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        return check_redis_url(value)

    @field_validator("sidecar_trusted_proxies", "bot_api_key", "sidecar_api_key_hashes", mode="before")
    @classmethod
    def _networks_from_csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("sidecar_api_key_hashes")
    @classmethod
    def _sha256_hex(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(item.lower() for item in value)
        if not all(is_key_digest(item) for item in lowered):
            raise ValueError("must be SHA-256 digests, 64 hex digits each, comma-separated")
        return lowered

    @field_validator(
        "sidecar_canary_upstream", "sidecar_rate_limits", "sidecar_log_file", "otel_exporter_otlp_endpoint",
        "sidecar_redis_url", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def canary_enabled(self) -> bool:
        return self.sidecar_canary_upstream is not None and self.sidecar_canary_percent > 0


def origin_address(url: str) -> tuple[str, int]:
    """The (host, port) an http:// origin points at."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build the settings from an environment, failing with the offending key named."""
    try:
        return Settings(**environ_subset(environ, Settings.model_fields))
    except ValidationError as exc:
        raise ConfigError.from_validation(exc) from None
