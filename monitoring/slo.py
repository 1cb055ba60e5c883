"""The service level objectives, read from slo.yaml into one validated object."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ROOT = Path(__file__).resolve().parents[1]
SLO_FILE = ROOT / "slo.yaml"

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> int:
    """Seconds in a Prometheus duration with one unit (`5m`, `1h`, `3d`)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 5m, 1h or 3d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Availability(_Strict):
    objective: float = Field(gt=0, lt=1)

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 12)


class Latency(_Strict):
    objective: float = Field(gt=0, lt=1)
    threshold_seconds: float = Field(gt=0)

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 12)


class Throughput(_Strict):
    min_rps: float = Field(gt=0)


class ErrorRate(_Strict):
    max_ratio: float = Field(gt=0, lt=1)


class Resources(_Strict):
    cpu_max_ratio: float = Field(gt=0, le=1)
    memory_max_ratio: float = Field(gt=0, le=1)
    memory_limit_mib: dict[str, int]


class BurnRateAlert(_Strict):
    severity: Literal["page", "ticket"]
    long_window: str
    short_window: str
    burn_rate: float = Field(gt=0)
    for_: str = Field(alias="for")

    @field_validator("long_window", "short_window", "for_")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        duration_seconds(value)
        return value


class WebhookRejections(_Strict):
    max_ratio: float = Field(gt=0, le=1)
    min_per_second: float = Field(ge=0)


class QueueAge(_Strict):
    max_seconds: float = Field(gt=0)
    for_: str = Field(alias="for")

    @field_validator("for_")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        duration_seconds(value)
        return value


class PlatformConnections(_Strict):
    """Connections the bot holds itself (DingTalk Stream, Feishu long connection)."""

    # Down (and not standing by for another replica) this long pages.
    down_for: str = "2m"
    # Up, yet nothing at all received for this long: the watchdog itself is not working.
    silent_seconds: float = Field(300, gt=0)
    # More reconnects than this within 15 minutes is a storm (or a network that keeps cutting).
    max_reconnects_per_15m: int = Field(10, ge=1)

    @field_validator("down_for")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        duration_seconds(value)
        return value


class SLO(_Strict):
    """Every target the rules, dashboards and load-test gates are built from."""

    service: str
    period: str
    availability: Availability
    latency: Latency
    throughput: Throughput
    error_rate: ErrorRate
    resources: Resources
    burn_rate_alerts: tuple[BurnRateAlert, ...]
    ack_deadlines_seconds: dict[str, float]
    ack_warning_ratio: float = Field(gt=0, lt=1)
    webhook_rejections: WebhookRejections
    # Reply objectives: receipt to reply delivered, and the bot's own part of it (monitoring/replies.py).
    reply: Latency
    reply_overhead: Latency
    queue_age: QueueAge
    platform_connections: PlatformConnections = PlatformConnections()

    @field_validator("period")
    @classmethod
    def _period_is_duration(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @model_validator(mode="after")
    def _windows_nest(self) -> SLO:
        for alert in self.burn_rate_alerts:
            if duration_seconds(alert.short_window) >= duration_seconds(alert.long_window):
                raise ValueError(f"short window {alert.short_window} must be shorter than {alert.long_window}")
        return self

    @property
    def windows(self) -> list[str]:
        """Every window an alert reads, shortest first: the SLI recording rules cover exactly these."""
        names = {w for a in self.burn_rate_alerts for w in (a.long_window, a.short_window)}
        return sorted(names, key=duration_seconds)


_selected: list[Path] = []


@contextmanager
def slo_file(path: Path) -> Iterator[None]:
    """Make `load_slo()` without arguments read `path`: dashboards read their thresholds that way."""
    _selected.append(path)
    try:
        yield
    finally:
        _selected.pop()


def load_slo(path: Path | None = None) -> SLO:
    """Read and validate slo.yaml, naming the file and the bad key when it is wrong."""
    path = path or (_selected[-1] if _selected else SLO_FILE)
    try:
        return SLO.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        raise SystemExit(f"{path}: {exc}") from None
