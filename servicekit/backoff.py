"""How long to wait before trying again: exponential backoff with jitter, one formula for every retry loop."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float, *, least: float = 0.0) -> float:
    """Seconds before retry number `attempt + 1` (the first retry is attempt 0).

    The step doubles from `base` up to `cap`; the delay is drawn uniformly from `least` x step to
    the step. `least=0` is full jitter (the most spread for callers retrying together); a reconnect
    loop keeps some of the step (`least=0.5`) so it never hammers a server that just went away.
    """
    step = min(cap, base * 2 ** min(attempt, 62))
    return random.uniform(least * step, step)
