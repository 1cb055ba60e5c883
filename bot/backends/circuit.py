"""A consecutive-failure circuit breaker, so a dead model fails fast instead of piling up."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Closed until `threshold` failures in a row; open for `reset_after` s; then one trial call."""

    def __init__(self, threshold: int, reset_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None and self._clock() - self._opened_at < self.reset_after

    def retry_after(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_after - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial call may."""
        if self._opened_at is None:
            return True
        if self.is_open or self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_in_flight = False
        if self._opened_at is not None or self._failures >= self.threshold:
            self._opened_at = self._clock()
