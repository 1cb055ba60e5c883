"""Settings read from an environment handed in as a mapping, never from os.environ directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
