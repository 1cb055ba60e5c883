"""botwatch sidecar: the proxy in front of the bot (probes, rate limits, shedding, canary)."""

__version__ = "0.1.0"
