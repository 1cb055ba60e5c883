"""The stepped run read back: each step's rate, exact percentile and error ratio, the knee, and its chart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loadtest.gates import BOT_DIRECT_HINT, REFUSAL_WARN_RATIO
from loadtest.record import Outcome, RunRecord
from loadtest.slo import Gates


@dataclass(frozen=True)
class StepResult:
    offered_rps: float
    achieved_rps: float
    percentile_ms: float
    error_ratio: float
    held: bool  # both the latency and the error gate held during this step
    refused_ratio: float = 0.0  # share of the step's requests the sidecar's rate limits refused (429)

    @property
    def limited(self) -> bool:
        """So many requests refused that the step measured the rate limits, not the service."""
        return self.refused_ratio >= REFUSAL_WARN_RATIO


def step_holds(window: RunRecord, gates: Gates) -> bool:
    """Whether one step's requests stayed under the latency threshold and the error ceiling."""
    return (
        window.served > 0
        and window.percentile_ms(gates.latency_objective) < gates.latency_threshold_s * 1000
        and window.error_ratio < gates.max_error_ratio
    )


def analyse_steps(record: RunRecord, gates: Gates) -> list[StepResult]:
    results = []
    for step in record.steps:
        window = record.window(step["measure_from"], step["end"])
        seconds = step["end"] - step["measure_from"]
        results.append(StepResult(
            step["rate"], window.served / seconds, window.percentile_ms(gates.latency_objective),
            window.error_ratio, step_holds(window, gates),
            window.total(Outcome.REJECTED) / window.total() if window.total() else 0.0,
        ))
    return results


def knee(steps: list[StepResult]) -> StepResult | None:
    """The last step before the first one that broke a gate, or that the rate limits refused in part:
    the highest rate the service was seen to hold."""
    held = None
    for step in steps:
        if not step.held or step.limited:
            break
        held = step
    return held


def knee_line(steps: list[StepResult], gates: Gates) -> str:
    best = knee(steps)
    name = gates.percentile_name
    stop = next((s for s in steps if not s.held or s.limited), None)
    if stop is None:
        after = "; no step broke a gate (raise --max-rate)"
    elif stop.held:
        after = (
            f"; offering {stop.offered_rps:.0f} req/s the sidecar's rate limits refused {stop.refused_ratio:.1%}"
            f" of requests, so the climb measured the limits from there on, not the service; {BOT_DIRECT_HINT}"
        )
    else:
        after = (
            f"; offering {stop.offered_rps:.0f} req/s ({stop.achieved_rps:.0f} achieved) {name} was"
            f" {stop.percentile_ms:.1f} ms and errors {stop.error_ratio:.2%}"
        )
    if not steps:
        return "knee: no step ran"
    if best is None:
        return f"knee: below the first step ({steps[0].offered_rps:.0f} req/s offered)" + after
    refused = f", {best.refused_ratio:.1%} refused by rate limits" if best.refused_ratio else ""
    return (
        f"knee: {best.achieved_rps:.0f} req/s (offered {best.offered_rps:.0f}; {name} {best.percentile_ms:.1f} ms,"
        f" errors {best.error_ratio:.2%}{refused})" + after
    )


def draw(steps: list[StepResult], gates: Gates, path: Path) -> list[str]:
    """Rate against the latency percentile, the error ratio and the share refused by rate limits,
    with the gates drawn in; returns the legend's labels."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the chart goes to a file
    import matplotlib.pyplot as plt

    # The offered rate is what the run controls, so it orders the points; under overload the achieved
    # rate falls back, and plotting against it would fold the curve onto itself.
    rates = [s.offered_rps for s in steps]
    fig, latency_axis = plt.subplots(figsize=(9, 5), dpi=110)
    latency_axis.plot(rates, [s.percentile_ms for s in steps], "o-", color="tab:blue", label=gates.percentile_name)
    latency_axis.axhline(gates.latency_threshold_s * 1000, color="tab:blue", linestyle="--", linewidth=1,
                         label=f"{gates.percentile_name} gate ({gates.latency_threshold_s * 1000:g} ms)")
    latency_axis.set_xlabel("offered rate (req/s)")
    latency_axis.set_ylabel(f"{gates.percentile_name} latency (ms)", color="tab:blue")
    error_axis = latency_axis.twinx()
    error_axis.plot(rates, [s.error_ratio * 100 for s in steps], "s-", color="tab:red", label="error ratio")
    error_axis.axhline(gates.max_error_ratio * 100, color="tab:red", linestyle=":", linewidth=1,
                       label=f"error gate ({gates.max_error_ratio:.1%})")
    # Refused requests are not errors, but a climb they dominate measured the sidecar's rules.
    error_axis.plot(rates, [s.refused_ratio * 100 for s in steps], "^-", color="tab:orange",
                    label="refused by rate limits (429)")
    error_axis.set_ylabel("errors, refused (%)", color="tab:red")
    error_axis.set_ylim(bottom=0, top=max(gates.max_error_ratio * 200,
                                          *(max(s.error_ratio, s.refused_ratio) * 110 for s in steps)))
    best = knee(steps)
    if best is not None:
        latency_axis.axvline(best.offered_rps, color="tab:green", linewidth=1.5,
                             label=f"knee: {best.achieved_rps:.0f} req/s achieved")
    for s in steps:
        latency_axis.annotate(f"{s.achieved_rps:.0f}", (s.offered_rps, s.percentile_ms), textcoords="offset points",
                              xytext=(0, 6), ha="center", fontsize="x-small", color="tab:gray")
    handles = latency_axis.get_legend_handles_labels()[0] + error_axis.get_legend_handles_labels()[0]
    latency_axis.legend(handles=handles, loc="upper left", fontsize="small")
    labels = [str(handle.get_label()) for handle in handles]
    latency_axis.set_title("botwatch step load: rate against latency and errors (grey: achieved req/s)")
    latency_axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return labels
