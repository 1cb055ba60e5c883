"""Every request of a run, kept raw: Locust rounds its own percentiles, the gates must not."""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

# A status the generator records when no HTTP answer arrived at all.
NO_RESPONSE = 0


class Outcome(IntEnum):
    """How one request ended, as the gates count it."""

    OK = 0
    ERROR = 1  # an answer, but a 5xx, an unexpected status or a body that breaks the protocol
    REJECTED = 2  # a 429: load the sidecar turned away on purpose, counted apart from errors
    NO_RESPONSE = 3  # connection refused, reset or timed out: an error that no server counter sees


def classify(status: int, failed: bool) -> Outcome:
    """The outcome of one request from its status and whether the user flagged it as failed."""
    if status == NO_RESPONSE:
        return Outcome.NO_RESPONSE
    if status == 429:
        return Outcome.REJECTED
    if failed or not 200 <= status < 400:
        return Outcome.ERROR
    return Outcome.OK


def exact_percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q of all values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))
    return ordered[rank - 1]


@dataclass
class Recorder:
    """Collects requests in the load generator's process; written once when the run stops."""

    ends: array[float] = field(default_factory=lambda: array("d"))
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    outcomes: array[int] = field(default_factory=lambda: array("b"))
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    error_reasons: Counter[str] = field(default_factory=Counter)
    steps: list[dict[str, float]] = field(default_factory=list)
    # Platform callbacks by the reference their text carries, and when each was posted (loadtest/replies.py).
    replies_sent: dict[str, float] = field(default_factory=dict)
    started: float = 0.0
    stopped: float = 0.0

    def add(self, route: str, status: int, latency_ms: float, end: float, error: str | None) -> Outcome:
        outcome = classify(status, error is not None)
        self.ends.append(end)
        self.latencies_ms.append(latency_ms)
        self.outcomes.append(outcome)
        self.counts[(route, status)] += 1
        if outcome in (Outcome.ERROR, Outcome.NO_RESPONSE):
            # Reasons are short, bounded strings so the summary stays readable.
            self.error_reasons[f"{route}: {error or f'HTTP {status}'}"[:160]] += 1
        return outcome

    def as_record(self) -> RunRecord:
        return RunRecord(
            ends=tuple(self.ends), latencies_ms=tuple(self.latencies_ms),
            outcomes=tuple(Outcome(o) for o in self.outcomes), counts=dict(self.counts),
            error_reasons=dict(self.error_reasons), steps=list(self.steps),
            started=self.started, stopped=self.stopped,
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "samples.bin").open("wb") as fh:
            self.ends.tofile(fh)
            self.latencies_ms.tofile(fh)
            self.outcomes.tofile(fh)
        meta = {
            "requests": len(self.outcomes),
            "started": self.started,
            "stopped": self.stopped,
            "counts": [[route, status, n] for (route, status), n in sorted(self.counts.items())],
            "error_reasons": dict(self.error_reasons.most_common(20)),
            "steps": self.steps,
        }
        (directory / "samples.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        (directory / "replies_sent.json").write_text(json.dumps(self.replies_sent), encoding="utf-8")


@dataclass(frozen=True)
class RunRecord:
    """A finished run as the gates and the truth check read it."""

    ends: tuple[float, ...]
    latencies_ms: tuple[float, ...]
    outcomes: tuple[Outcome, ...]
    counts: dict[tuple[str, int], int]
    error_reasons: dict[str, int]
    steps: list[dict[str, float]]
    started: float
    stopped: float

    @classmethod
    def load(cls, directory: Path) -> RunRecord:
        meta: dict[str, Any] = json.loads((directory / "samples.json").read_text(encoding="utf-8"))
        n = int(meta["requests"])
        ends, latencies, outcomes = array("d"), array("d"), array("b")
        with (directory / "samples.bin").open("rb") as fh:
            ends.fromfile(fh, n)
            latencies.fromfile(fh, n)
            outcomes.fromfile(fh, n)
        return cls(
            ends=tuple(ends),
            latencies_ms=tuple(latencies),
            outcomes=tuple(Outcome(o) for o in outcomes),
            counts={(route, int(status)): int(count) for route, status, count in meta["counts"]},
            error_reasons=dict(meta["error_reasons"]),
            steps=list(meta["steps"]),
            started=float(meta["started"]),
            stopped=float(meta["stopped"]),
        )

    def window(self, start: float, end: float) -> RunRecord:
        """The requests that finished in [start, end), for one step of a stepped run."""
        keep = [i for i, t in enumerate(self.ends) if start <= t < end]
        return RunRecord(
            ends=tuple(self.ends[i] for i in keep),
            latencies_ms=tuple(self.latencies_ms[i] for i in keep),
            outcomes=tuple(self.outcomes[i] for i in keep),
            counts={},
            error_reasons={},
            steps=[],
            started=start,
            stopped=end,
        )

    def total(self, *outcomes: Outcome) -> int:
        return sum(1 for o in self.outcomes if o in outcomes) if outcomes else len(self.outcomes)

    @property
    def served(self) -> int:
        """Requests the service itself answered: everything but the sidecar's 429s and lost requests."""
        return self.total(Outcome.OK, Outcome.ERROR)

    @property
    def errors(self) -> int:
        return self.total(Outcome.ERROR, Outcome.NO_RESPONSE)

    @property
    def error_ratio(self) -> float:
        # 429s are not errors of the service, and not part of the denominator either.
        attempted = self.total(Outcome.OK, Outcome.ERROR, Outcome.NO_RESPONSE)
        return self.errors / attempted if attempted else 0.0

    @property
    def span_s(self) -> float:
        """From the first request's start to the last request's end."""
        if not self.ends:
            return 0.0
        first = min(e - lat / 1000 for e, lat in zip(self.ends, self.latencies_ms))
        return max(self.ends) - first

    @property
    def served_rps(self) -> float:
        span = self.span_s
        return self.served / span if span > 0 else 0.0

    def served_latencies_ms(self) -> list[float]:
        return [lat for lat, o in zip(self.latencies_ms, self.outcomes) if o in (Outcome.OK, Outcome.ERROR)]

    def percentile_ms(self, q: float) -> float:
        return exact_percentile(self.served_latencies_ms(), q)

    def answered_by_route(self) -> dict[str, dict[int, int]]:
        """HTTP answers per route and status; requests that got none are left out."""
        table: dict[str, dict[int, int]] = {}
        for (route, status), n in self.counts.items():
            if status != NO_RESPONSE:
                table.setdefault(route, {})[status] = n
        return table
