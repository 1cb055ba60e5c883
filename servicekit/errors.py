"""The one error a service raises before it serves: a setting it cannot run with."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

_SECRET_HINTS = ("key", "secret", "token", "password", "redis_url")


class ConfigError(Exception):
    """A bad setting, named with the variable that carries it (start-up only; never reaches HTTP)."""

    code = "config_error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "config error")
        self.message = message or "config error"

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: str = "") -> ConfigError:
        """Name each bad setting; echo its value only when it cannot be a secret."""
        parts = []
        for error in exc.errors():
            name = prefix + (str(error["loc"][0]).upper() if error["loc"] else "?")
            shown = "" if any(h in name.lower() for h in _SECRET_HINTS) else f" (got {error.get('input')!r})"
            parts.append(f"{name}: {error['msg']}{shown}")
        return cls("invalid settings: " + "; ".join(parts))
