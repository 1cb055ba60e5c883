"""When to try a failed delivery again: exponential backoff with full jitter, bounded attempts."""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.backoff import backoff_delay


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before attempt number `attempt + 1`; a server's Retry-After wins when longer."""
        backoff = backoff_delay(attempt, self.base_delay, self.max_delay)
        if retry_after is not None:
            return min(self.max_delay, max(backoff, retry_after))
        return backoff

    def exhausted(self, attempts_made: int) -> bool:
        return attempts_made >= self.max_attempts
