"""The contract for multi-turn session storage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import orjson

from bot.messages import Turn


@runtime_checkable
class SessionStore(Protocol):
    """Keeps each conversation's recent turns for a limited time."""

    async def load(self, key: str) -> list[Turn]:
        """The turns saved under `key`, oldest first; empty when unknown or expired."""
        ...

    async def save(self, key: str, turns: Sequence[Turn]) -> None:
        """Replace the turns under `key` and restart its time-to-live."""
        ...

    async def check(self) -> None:
        """Return when the store answers; raise DependencyUnavailable otherwise."""
        ...


def encode_turns(turns: Sequence[Turn]) -> bytes:
    return orjson.dumps([[turn.role, turn.content] for turn in turns])


def decode_turns(raw: bytes | str | None) -> list[Turn]:
    """Decode stored turns; anything unreadable counts as no history rather than an error."""
    if not raw:
        return []
    try:
        return [Turn(role, content) for role, content in orjson.loads(raw)]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return []
