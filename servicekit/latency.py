"""Request-latency histogram buckets: part of the metrics contract the SLO rules read.

Both services' request histograms use them, and an SLO latency threshold must be one of them,
so the SLI is read from a bucket boundary rather than interpolated.
"""

from __future__ import annotations

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# A reply (receipt to delivered) includes the model call: seconds, minutes while a platform is down.
# The reply SLO thresholds (slo.yaml `reply`, `reply_overhead`) must be bucket boundaries too.
REPLY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
# The bot's own share of a reply (queue wait, sessions, send) is meant to stay well under a second.
REPLY_OVERHEAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
