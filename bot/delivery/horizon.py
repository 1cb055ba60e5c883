"""How long a failed reply is worth retrying: a per-platform horizon, shortened by the platform's own reply window.

A reply that misses its window is refused by the platform anyway (QQ accepts a passive reply for
5 minutes in a group and 60 in a direct chat), and one that arrives hours late is no longer an
answer; within the horizon a platform outage is ridden out, however many attempts that takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.messages import InboundMessage
from bot.platforms.base import PlatformAdapter, ReplyWindowed

# Platforms whose replies go stale sooner than the general horizon; DELIVERY_RETRY_HORIZONS overrides.
DEFAULT_PLATFORM_HORIZONS: Mapping[str, float] = {
    "qq": 3600.0,  # passive replies: 60 min in direct chats (the adapter shortens groups to 5 min)
    "dingtalk": 5400.0,  # a callback's session webhook lives about 90 minutes
}


@dataclass(frozen=True)
class RetryHorizon:
    """Seconds after a message was received within which its reply is still retried."""

    default: float = 6 * 3600.0
    per_platform: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PLATFORM_HORIZONS))

    def for_message(self, message: InboundMessage, adapter: PlatformAdapter | None = None) -> tuple[float, str]:
        """The horizon in seconds and where it comes from, for the dead letter's reason."""
        horizon = self.per_platform.get(message.platform, self.default)
        source = f"{message.platform} retry horizon"
        window = adapter.reply_window(message) if isinstance(adapter, ReplyWindowed) else None
        if window is not None and window < horizon:
            return float(window), f"{message.platform} reply window"
        return horizon, source
