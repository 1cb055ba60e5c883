"""Backoff: the step doubles up to the cap, and the jitter stays inside [least x step, step]."""

from __future__ import annotations

import pytest

from servicekit.backoff import backoff_delay


@pytest.mark.parametrize(("attempt", "step"), [(0, 1.0), (1, 2.0), (3, 8.0), (5, 30.0), (10_000, 30.0)])
def test_the_step_doubles_up_to_the_cap(attempt: int, step: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("random.uniform", lambda low, high: high)
    assert backoff_delay(attempt, base=1.0, cap=30.0) == step


def test_full_jitter_reaches_zero_and_partial_jitter_keeps_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("random.uniform", lambda low, high: low)
    assert backoff_delay(2, base=1.0, cap=30.0) == 0.0
    assert backoff_delay(2, base=1.0, cap=30.0, least=0.5) == 2.0


def test_draws_stay_within_the_step() -> None:
    draws = [backoff_delay(3, base=0.25, cap=60.0, least=0.5) for _ in range(2000)]
    assert all(1.0 <= d <= 2.0 for d in draws)
    assert max(draws) - min(draws) > 0.5, "jittered, not constant"
