"""The named load shapes an operator picks: smoke (the CI gate), soak and step."""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.settings import StepPlan


@dataclass(frozen=True)
class Profile:
    name: str
    rate: float  # requests per second offered in total (step: the first step's rate)
    duration_s: float
    user_rps: float  # each simulated user's own pace; users = rate / user_rps
    step: StepPlan | None = None
    report_resources: bool = False  # RSS and open files at start and end, for leaks


PROFILES = {
    # Twice the throughput floor, from many slow users as on a real chat service; short enough for CI.
    "smoke": Profile("smoke", rate=100, duration_s=30, user_rps=1.0),
    "soak": Profile("soak", rate=100, duration_s=600, user_rps=1.0, report_resources=True),
    "step": Profile(
        "step", rate=100, duration_s=3600, user_rps=10.0,
        step=StepPlan(start_rate=100, step_rate=100, step_seconds=10, max_rate=20000),
    ),
}
