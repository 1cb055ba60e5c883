"""A stepped run is read into its knee: the highest rate before the first step that broke a gate."""

from __future__ import annotations

from pathlib import Path

from loadtest.record import Recorder
from loadtest.slo import Gates
from loadtest.step import StepResult, analyse_steps, draw, knee, knee_line

GATES = Gates(min_rps=50, latency_objective=0.99, latency_threshold_s=0.5, max_error_ratio=0.001)


def step(rate: float, p_ms: float, errors: float = 0.0) -> StepResult:
    return StepResult(rate, rate * 0.98, p_ms, errors, p_ms < 500 and errors < 0.001)


def test_the_knee_is_the_last_step_before_the_first_broken_one() -> None:
    steps = [step(100, 5), step(200, 8), step(300, 620), step(400, 30)]
    assert knee(steps) == steps[1]
    line = knee_line(steps, GATES)
    assert line.startswith("knee: 196 req/s (offered 200; P99 8.0 ms, errors 0.00%)")
    assert "offering 300 req/s (294 achieved) P99 was 620.0 ms" in line


def test_errors_alone_also_end_the_climb() -> None:
    steps = [step(100, 5), step(200, 9, errors=0.002)]
    assert knee(steps) == steps[0]


def test_a_service_broken_from_the_first_step_has_no_knee() -> None:
    assert knee([step(100, 700)]) is None
    assert knee_line([step(100, 700)], GATES).startswith("knee: below the first step (100 req/s offered)")


def test_steps_are_judged_on_exact_percentiles_after_the_settling_time() -> None:
    rec = Recorder()
    rec.steps = [
        {"rate": 10, "start": 0.0, "measure_from": 1.0, "end": 11.0},
        {"rate": 20, "start": 11.0, "measure_from": 12.0, "end": 21.0},
    ]
    rec.add("/x", 200, 900.0, 0.5, None)  # during the first settle: ignored
    for i in range(100):
        rec.add("/x", 200, 4.0, 1.0 + i * 0.1, None)
    for i in range(100):
        rec.add("/x", 200, 4.0 if i < 98 else 600.0, 12.0 + i * 0.09, None)
    first, second = analyse_steps(rec.as_record(), GATES)
    assert first.held and first.percentile_ms == 4.0 and first.achieved_rps == 10.0
    assert not second.held and second.percentile_ms == 600.0


def test_the_chart_is_written_as_a_png(tmp_path: Path) -> None:
    chart = tmp_path / "step.png"
    draw([step(100, 5), step(200, 8), step(300, 620)], GATES, chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def limited(rate: float, p_ms: float, refused: float) -> StepResult:
    return StepResult(rate, rate * (1 - refused), p_ms, 0.0, True, refused)


def test_a_step_the_rate_limits_refused_is_not_capacity_and_the_line_says_so() -> None:
    steps = [step(100, 5), step(200, 6), limited(300, 6, 0.4), limited(400, 7, 0.55)]
    assert knee(steps) == steps[1]
    line = knee_line(steps, GATES)
    assert "no step broke a gate" not in line
    assert "offering 300 req/s the sidecar's rate limits refused 40.0%" in line
    assert "--host http://127.0.0.1:18789" in line


def test_a_few_refusals_stay_below_the_bar_but_are_reported() -> None:
    steps = [step(100, 5), limited(200, 6, 0.01)]
    assert knee(steps) == steps[1]
    assert "1.0% refused by rate limits" in knee_line(steps, GATES)


def test_each_steps_refused_share_is_counted_from_the_429s() -> None:
    rec = Recorder()
    rec.steps = [{"rate": 10, "start": 0.0, "measure_from": 0.0, "end": 10.0}]
    for i in range(100):
        rec.add("/x", 429 if i % 4 == 0 else 200, 4.0, i * 0.1, None)
    (only,) = analyse_steps(rec.as_record(), GATES)
    assert only.refused_ratio == 0.25 and only.held


def test_the_chart_draws_the_share_refused_by_rate_limits(tmp_path: Path) -> None:
    labels = draw([step(100, 5), limited(200, 6, 0.3)], GATES, tmp_path / "step.png")
    assert "refused by rate limits (429)" in labels
