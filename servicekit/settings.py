"""Settings read from an environment handed in as a mapping, never from os.environ directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class EnvironSettings(BaseSettings):
    """Frozen settings built only from the keyword arguments `load_settings` passes."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment arrives as an argument to load_settings, so tests never touch os.environ.
        return (init_settings,)


def split_csv(value: object) -> object:
    """Accept a comma-separated string where a list is expected."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def environ_subset(environ: Mapping[str, str], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the variables that name a field, matching case-insensitively."""
    wanted = {name.lower() for name in fields}
    return {key.lower(): value for key, value in environ.items() if key.lower() in wanted}


REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(value: SecretStr | None) -> SecretStr | None:
    """A Redis URL redis-py can open; the message never repeats it (it may hold a password)."""
    if value is not None and urlsplit(value.get_secret_value()).scheme not in REDIS_SCHEMES:
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return value
