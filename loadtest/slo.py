"""The load-test gates, read from slo.yaml so no target is written twice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SLO_FILE = Path(__file__).resolve().parents[1] / "slo.yaml"


@dataclass(frozen=True)
class Gates:
    """What a gated run must hold: a rate floor, a latency percentile under a threshold, an error ceiling."""

    min_rps: float
    latency_objective: float
    latency_threshold_s: float
    max_error_ratio: float

    @property
    def percentile_name(self) -> str:
        """'P99' for an objective of 0.99, 'P99.9' for 0.999."""
        return f"P{self.latency_objective * 100:g}"


def load_gates(path: Path = SLO_FILE) -> Gates:
    """Read the gates from slo.yaml, naming the missing key if the file lacks one."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return Gates(
            min_rps=float(data["throughput"]["min_rps"]),
            latency_objective=float(data["latency"]["objective"]),
            latency_threshold_s=float(data["latency"]["threshold_seconds"]),
            max_error_ratio=float(data["error_rate"]["max_ratio"]),
        )
    except KeyError as exc:
        raise SystemExit(f"{path}: missing key {exc.args[0]!r} needed by the load-test gates") from None
