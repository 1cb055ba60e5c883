"""Rate-limit rules: read and validate the YAML file that names them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import limits
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from servicekit.errors import ConfigError
from sidecar.routes import KNOWN_ROUTES, OTHER, Route

KeyKind = Literal["client_ip", "api_key", "route", "platform"]
Strategy = Literal["moving-window", "fixed-window"]
PLATFORMS = frozenset(KNOWN_ROUTES.values()) | {OTHER.platform}
ROUTES = frozenset(KNOWN_ROUTES) | {OTHER.label}


class _RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    routes: tuple[str, ...] | None = None
    platforms: tuple[str, ...] | None = None
    key: KeyKind
    limits: tuple[str, ...] = Field(min_length=1)
    strategy: Strategy = "moving-window"
    shadow: bool = False

    @field_validator("routes")
    @classmethod
    def _known_routes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(value or ()) - ROUTES)
        if unknown:
            raise ValueError(f"unknown routes {unknown}; known: {sorted(ROUTES)}")
        return value

    @field_validator("platforms")
    @classmethod
    def _known_platforms(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(value or ()) - PLATFORMS)
        if unknown:
            raise ValueError(f"unknown platforms {unknown}; known: {sorted(PLATFORMS)}")
        return value

    @field_validator("limits", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in re.split(r"[;,]", value) if part.strip())
        return value

    @field_validator("limits")
    @classmethod
    def _parseable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            try:
                limits.parse(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a rate such as '20/second' or '600 per minute'") from None
        return value


class _RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[_RuleSpec] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rule:
    """One named rule: which requests it counts, how it keys them, and its rates (all must hold)."""

    name: str
    key: KeyKind
    items: tuple[limits.RateLimitItem, ...]
    strategy: Strategy = "moving-window"
    shadow: bool = False
    routes: frozenset[str] | None = None
    platforms: frozenset[str] | None = None

    def applies_to(self, route: Route) -> bool:
        if self.routes is not None and route.label not in self.routes:
            return False
        return self.platforms is None or route.platform in self.platforms


def parse_rules(text: str, source: str = "rules") -> tuple[Rule, ...]:
    """Rules from YAML text; a ConfigError names the file and the problem."""
    try:
        data = yaml.safe_load(text) or {}
        spec = _RulesFile.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
    names = [rule.name for rule in spec.rules]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ConfigError(f"{source}: rule names must be unique, repeated: {duplicated}")
    return tuple(
        Rule(
            name=rule.name,
            key=rule.key,
            items=tuple(limits.parse(text) for text in rule.limits),
            strategy=rule.strategy,
            shadow=rule.shadow,
            routes=frozenset(rule.routes) if rule.routes is not None else None,
            platforms=frozenset(rule.platforms) if rule.platforms is not None else None,
        )
        for rule in spec.rules
    )


def load_rules(path: str | None) -> tuple[Rule, ...]:
    """The rules in a file; no file configured means no rules."""
    if path is None:
        return ()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"SIDECAR_RATE_LIMITS: cannot read {path}: {exc.strerror}") from None
    return parse_rules(text, path)
