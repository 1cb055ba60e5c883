"""Read a Prometheus /metrics page into numbers, and estimate quantiles the way PromQL does."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = Mapping[str, str]
LabelFilter = Callable[[Labels], bool]


@dataclass(frozen=True)
class Snapshot:
    """Every sample of one scrape, keyed by sample name and sorted label pairs."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return cls(samples)

    def __sub__(self, earlier: Snapshot) -> Snapshot:
        """Counter deltas over a run; a series born during the run started from zero."""
        return Snapshot({k: v - earlier.samples.get(k, 0.0) for k, v in self.samples.items()})

    def total(self, name: str, where: LabelFilter = lambda labels: True) -> float:
        return sum(v for (n, labels), v in self.samples.items() if n == name and where(dict(labels)))

    def value(self, name: str) -> float | None:
        """An unlabelled gauge, such as process_resident_memory_bytes."""
        return self.samples.get((name, ()))

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.samples)

    def buckets(self, histogram: str, where: LabelFilter = lambda labels: True) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) pairs of a histogram, summed over the series `where` keeps."""
        sums: dict[float, float] = {}
        for (n, labels), v in self.samples.items():
            if n != f"{histogram}_bucket":
                continue
            as_dict = dict(labels)
            if where(as_dict):
                le = float(as_dict["le"])
                sums[le] = sums.get(le, 0.0) + v
        return sorted(sums.items())


def scrape(url: str, timeout: float = 5.0) -> Snapshot:
    """Fetch and parse one /metrics page."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
        return Snapshot.parse(resp.read().decode("utf-8"))


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile: linear interpolation inside the bucket holding rank q·count."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                # PromQL answers with the highest finite bound when the rank lands in +Inf.
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def bucket_index(value: float, bounds: list[float]) -> int:
    """Index of the bucket (lower, upper] holding `value`; len(bounds) past the last finite bound."""
    for i, upper in enumerate(bounds):
        if value <= upper:
            return i
    return len(bounds)


def bucket_label(index: int, bounds: list[float]) -> str:
    lower = bounds[index - 1] if index > 0 else 0.0
    upper = bounds[index] if index < len(bounds) else math.inf
    return f"({lower:g} s, {upper:g} s]"
