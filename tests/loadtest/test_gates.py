"""A gated run fails, with the gate named, when slo.yaml's floor, latency or error ceiling is missed."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.gates import Figures, judge, summary_line
from loadtest.slo import Gates, load_gates

GATES = Gates(min_rps=50, latency_objective=0.99, latency_threshold_s=0.5, max_error_ratio=0.001)


def figures(rps: float = 100.0, p_ms: float = 20.0, errors: int = 0, served: int = 3000) -> Figures:
    return Figures(served=served, rejected=0, errors=errors, rps=rps, percentile_ms=p_ms,
                   error_ratio=errors / served if served else 0.0)


def test_a_run_inside_every_gate_passes_and_says_what_it_achieved() -> None:
    verdict = judge(figures(), GATES)
    assert verdict.passed
    line = summary_line(verdict, GATES)
    assert line.startswith("PASS: 100.0 req/s >= 50, P99 20.000 ms < 500 ms")
    assert "\n" not in line


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        (figures(p_ms=500.0), "P99 500.000 ms >= 500 ms"),  # at the threshold is already a miss
        (figures(p_ms=612.345), "P99 612.345 ms >= 500 ms"),
        (figures(errors=3), "error ratio 0.100% >= 0.100% (3 errors)"),  # 3 of 3000 is exactly the ceiling
        (figures(rps=49.9), "throughput 49.9 req/s < 50 req/s"),
        (figures(served=0), "no request was served"),
    ],
)
def test_each_missed_gate_fails_with_a_one_line_reason(run: Figures, reason: str) -> None:
    verdict = judge(run, GATES)
    assert not verdict.passed
    line = summary_line(verdict, GATES)
    assert line == f"FAIL: {reason}"


def test_every_missed_gate_is_named_on_the_same_line() -> None:
    line = summary_line(judge(figures(rps=10, p_ms=700, errors=30), GATES), GATES)
    assert line.count(";") == 2 and "\n" not in line
    assert "P99 700.000 ms" in line and "error ratio" in line and "throughput 10.0" in line


def test_gates_come_from_slo_yaml_and_follow_it(tmp_path: Path) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text(
        "latency: {objective: 0.999, threshold_seconds: 0.25}\n"
        "throughput: {min_rps: 7}\nerror_rate: {max_ratio: 0.02}\n"
    )
    gates = load_gates(slo)
    assert gates == Gates(min_rps=7, latency_objective=0.999, latency_threshold_s=0.25, max_error_ratio=0.02)
    assert gates.percentile_name == "P99.9"
    assert summary_line(judge(figures(p_ms=260), gates), gates) == "FAIL: P99.9 260.000 ms >= 250 ms"


def test_the_repository_slo_yaml_holds_the_guides_targets() -> None:
    gates = load_gates()
    assert (gates.min_rps, gates.latency_objective, gates.latency_threshold_s, gates.max_error_ratio) == (
        50, 0.99, 0.5, 0.001
    )


def test_a_slo_yaml_missing_a_target_is_refused_by_name(tmp_path: Path) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("latency: {objective: 0.99, threshold_seconds: 0.5}\nthroughput: {min_rps: 50}\n")
    with pytest.raises(SystemExit, match="error_rate"):
        load_gates(slo)


def test_refusals_by_rate_limits_warn_when_notable_and_fail_when_they_dominate() -> None:
    from loadtest.gates import refusal_check

    def with_refused(rejected: int, served: int = 1000) -> Figures:
        return Figures(served=served, rejected=rejected, errors=0, rps=100.0, percentile_ms=5.0, error_ratio=0.0)

    assert refusal_check(with_refused(0)) == (None, None)
    warning, failure = refusal_check(with_refused(100))
    assert failure is None and warning is not None
    assert "100 of 1100 requests (9.1%) refused by the sidecar's rate limits" in warning
    warning, failure = refusal_check(with_refused(1044, served=956))
    assert failure is not None and "52.2%" in failure and "the bot's own" in failure
