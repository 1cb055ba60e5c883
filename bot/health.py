"""Readiness: the named dependencies that must answer before the bot takes traffic."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.errors import BotError

Check = Callable[[], Awaitable[None]]


@dataclass
class Readiness:
    """Runs every registered check concurrently, each bounded by a timeout."""

    timeout: float = 2.0
    checks: dict[str, Check] = field(default_factory=dict)

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def failures(self) -> dict[str, str]:
        """Map each failing dependency to a short, secret-free reason; empty when all answer."""
        names = list(self.checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.checks[name](), self.timeout) for name in names), return_exceptions=True
        )
        failed: dict[str, str] = {}
        for name, result in zip(names, results):
            if isinstance(result, BotError):
                failed[name] = result.message
            elif isinstance(result, (TimeoutError, asyncio.TimeoutError)):
                failed[name] = f"no answer within {self.timeout:g}s"
            elif isinstance(result, BaseException):
                failed[name] = type(result).__name__
        return failed
