"""Judge one run against the gates: throughput floor, exact latency percentile, error ceiling."""

from __future__ import annotations

from dataclasses import dataclass, field

from loadtest.record import Outcome, RunRecord
from loadtest.slo import Gates


@dataclass(frozen=True)
class Figures:
    """What a run achieved, exactly as the gates compare it."""

    served: int
    rejected: int
    errors: int
    rps: float
    percentile_ms: float
    error_ratio: float

    @classmethod
    def of(cls, record: RunRecord, gates: Gates) -> Figures:
        return cls(
            served=record.served,
            rejected=record.total(Outcome.REJECTED),
            errors=record.errors,
            rps=record.served_rps,
            percentile_ms=record.percentile_ms(gates.latency_objective),
            error_ratio=record.error_ratio,
        )


# Above this share of requests refused with 429, the figures describe the sidecar's rules as much
# as the service: say so. Above the second, the run measured the rules: fail it.
REFUSAL_WARN_RATIO = 0.05
REFUSAL_DOMINATES_RATIO = 0.5
BOT_DIRECT_HINT = (
    "to measure the bot's own capacity load it directly (--host http://127.0.0.1:18789) or run the "
    "sidecar with looser rules (SIDECAR_RATE_LIMITS); see docs/loadtest.md"
)


def refusal_check(figures: Figures) -> tuple[str | None, str | None]:
    """(warning, failure) about the share of requests the sidecar's rate limits refused."""
    offered = figures.served + figures.rejected
    share = figures.rejected / offered if offered else 0.0
    if share < REFUSAL_WARN_RATIO:
        return None, None
    what = f"{figures.rejected} of {offered} requests ({share:.1%}) refused by the sidecar's rate limits"
    if share >= REFUSAL_DOMINATES_RATIO:
        return None, f"{what}: the run measured the rate limits, not the service; {BOT_DIRECT_HINT}"
    return f"WARNING: {what}; the figures describe the rest", None


@dataclass(frozen=True)
class Verdict:
    figures: Figures
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def judge(figures: Figures, gates: Gates) -> Verdict:
    """Every gate the figures miss, worded so one line tells an operator what broke."""
    failures = []
    if figures.served == 0:
        failures.append("no request was served")
    else:
        threshold_ms = gates.latency_threshold_s * 1000
        if figures.percentile_ms >= threshold_ms:
            failures.append(f"{gates.percentile_name} {figures.percentile_ms:.3f} ms >= {threshold_ms:g} ms")
        if figures.error_ratio >= gates.max_error_ratio:
            failures.append(
                f"error ratio {figures.error_ratio:.3%} >= {gates.max_error_ratio:.3%} ({figures.errors} errors)"
            )
        if figures.rps < gates.min_rps:
            failures.append(f"throughput {figures.rps:.1f} req/s < {gates.min_rps:g} req/s")
    return Verdict(figures, failures)


def summary_line(verdict: Verdict, gates: Gates) -> str:
    """'PASS: …' with the figures, or 'FAIL: …' naming each gate missed, on one line."""
    f = verdict.figures
    if not verdict.passed:
        return "FAIL: " + "; ".join(verdict.failures)
    return (
        f"PASS: {f.rps:.1f} req/s >= {gates.min_rps:g}, {gates.percentile_name} {f.percentile_ms:.3f} ms"
        f" < {gates.latency_threshold_s * 1000:g} ms, error ratio {f.error_ratio:.3%}"
        f" < {gates.max_error_ratio:.3%} ({f.served} served, {f.rejected} rate-limited by the sidecar)"
    )


def figures_line(figures: Figures, gates: Gates) -> str:
    """The figures alone, for a run whose verdict comes from elsewhere (a stepped run)."""
    f = figures
    return (
        f"whole run: {f.rps:.1f} req/s, {gates.percentile_name} {f.percentile_ms:.3f} ms, error ratio"
        f" {f.error_ratio:.3%} ({f.served} served, {f.rejected} rate-limited by the sidecar)"
    )
