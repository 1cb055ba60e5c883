"""The contract every model backend fulfils."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from bot.messages import Completion, Turn


@runtime_checkable
class ModelBackend(Protocol):
    """Turns a conversation into the assistant's next message."""

    name: str

    async def complete(self, turns: Sequence[Turn]) -> Completion:
        """Answer the last user turn given the earlier ones.

        Implementations raise only BackendError subclasses, and never put a
        credential into an exception message.
        """
        ...

    async def check(self) -> None:
        """Return when the backend can serve; raise BackendUnavailable otherwise."""
        ...
