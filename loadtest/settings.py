"""What the runner tells the Locust process, passed through the environment under LOADTEST_*."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class StepPlan:
    """Raise the offered rate from `start_rate` by `step_rate` every `step_seconds` up to `max_rate`."""

    start_rate: float
    step_rate: float
    step_seconds: float
    max_rate: float

    def rate_at(self, step: int) -> float:
        return min(self.start_rate + step * self.step_rate, self.max_rate)

    @property
    def settle_seconds(self) -> float:
        # The first moments of a step still carry the previous step's queue; judge the rest.
        return min(3.0, self.step_seconds / 4)


@dataclass(frozen=True)
class GeneratorSettings:
    record_dir: str
    user_rps: float
    weights: dict[str, int] = field(default_factory=dict)
    api_key: str | None = None
    step: StepPlan | None = None

    def to_env(self) -> dict[str, str]:
        return {"LOADTEST_SETTINGS": json.dumps(asdict(self))}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GeneratorSettings:
        data = json.loads(environ["LOADTEST_SETTINGS"])
        step = data.pop("step")
        return cls(**data, step=StepPlan(**step) if step else None)


def parse_weights(text: str) -> dict[str, int]:
    """'chat=10,feishu=2' -> {'chat': 10, 'feishu': 2}; a weight of 0 turns a user class off."""
    weights: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"weight {item!r} is not NAME=INTEGER")
        weights[name.strip().lower()] = int(value)
    return weights


CHAT_ROUTE = "/api/v1/chat"
# Default share of each user class when no weights are given: mostly API traffic, some of each platform.
DEFAULT_WEIGHTS = {"chat": 8}
DEFAULT_PLATFORM_WEIGHT = 1


def user_class_name(kind: str) -> str:
    """The Locust user class that drives `kind` ('chat' or a platform name)."""
    return kind.capitalize() + "User"


def weight_of(kind: str, weights: Mapping[str, int]) -> int:
    return weights.get(kind, DEFAULT_WEIGHTS.get(kind, DEFAULT_PLATFORM_WEIGHT))
