"""The contract every model backend fulfils."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
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


# What a stream yields: pieces of the answer's text as they arrive, then one Completion.
StreamItem = str | Completion


@runtime_checkable
class StreamingBackend(ModelBackend, Protocol):
    """A backend that can hand out its answer while it is still being written."""

    def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[StreamItem, None]:
        """Yield non-empty pieces of the answer as they come, then one Completion with the whole text.

        Retries (and failover) happen only before the first piece; a failure after it raises
        a BackendError from the iterator, and the pieces already yielded are all there is.
        """
        ...


async def stream_answer(backend: ModelBackend, turns: Sequence[Turn]) -> AsyncGenerator[StreamItem, None]:
    """Stream from any backend: one that cannot stream yields its whole answer as one piece."""
    if isinstance(backend, StreamingBackend):
        async with aclosing(backend.stream(turns)) as stream:
            async for item in stream:
                yield item
        return
    completion = await backend.complete(turns)
    if completion.text:
        yield completion.text
    yield completion
