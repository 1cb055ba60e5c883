"""The contract for the durable inbound queue: de-duplication, jobs, retries and dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bot.messages import InboundMessage


@dataclass(frozen=True, slots=True)
class Job:
    """One inbound message on its way to a delivered reply."""

    id: str
    message: InboundMessage
    attempts: int
    reply_text: str | None  # set once the model has answered, so a retry never asks it twice
    traceparent: str | None
    last_error: str | None = None
    created_at: float = 0.0
    # The platform message a streamed reply is being written into (its id), so a retry after a
    # crash finishes that message instead of sending a second one.
    stream_handle: str | None = None


@runtime_checkable
class InboundQueue(Protocol):
    """Durable, de-duplicating work queue shared by the webhook handlers and the delivery workers."""

    async def admit(self, message: InboundMessage, traceparent: str | None) -> bool:
        """Store the message durably unless its (platform, message_id) was seen within the TTL.

        Returns False for a duplicate. When it returns True the message survives a crash.
        Concurrent calls with the same id admit exactly one. Raises DependencyUnavailable
        when the store cannot take it, so the webhook answers 503 and the platform retries.
        """
        ...

    async def claim(self, lease_seconds: float) -> Job | None:
        """Take the oldest due job for `lease_seconds`; None when nothing is due."""
        ...

    async def save_reply(self, job_id: str, text: str) -> None: ...

    async def save_stream_handle(self, job_id: str, handle: str) -> None:
        """Remember the platform message a streamed reply went into; a later claim returns it in `stream_handle`."""
        ...

    async def complete(self, job_id: str) -> None:
        """The reply was delivered: the job is done for good."""
        ...

    async def retry(self, job_id: str, delay: float, error: str) -> None:
        """Count a failed attempt and make the job due again after `delay` seconds."""
        ...

    async def defer(self, job_id: str, delay: float) -> None:
        """Make the job due again after `delay` seconds without counting an attempt (it was not tried)."""
        ...

    async def bury(self, job_id: str, error: str) -> None:
        """Move the job to the dead letters with the reason."""
        ...

    async def dead_letters(self, limit: int = 100) -> Sequence[Job]: ...

    async def dead_letter(self, job_id: str) -> Job | None: ...

    async def replay(self, job_id: str | None = None) -> int:
        """Make dead letters due again (one, or all when None); returns how many."""
        ...

    async def purge(self, job_id: str | None = None) -> int: ...

    async def depth(self) -> dict[str, int]:
        """Items per queue: {"inbound": waiting or in progress, "dead_letter": buried}."""
        ...

    async def oldest_waiting_since(self) -> float | None:
        """When the oldest job that is due and not claimed became due (epoch seconds); None when none waits."""
        ...

    async def check(self) -> None:
        """Return when the store answers; raise DependencyUnavailable otherwise."""
        ...

    async def close(self) -> None: ...


def message_to_dict(message: InboundMessage) -> dict[str, Any]:
    return {
        "platform": message.platform, "message_id": message.message_id, "chat_id": message.chat_id,
        "user_id": message.user_id, "text": message.text, "received_at": message.received_at,
        "reply_handle": message.reply_handle,
    }


def message_from_dict(data: dict[str, Any]) -> InboundMessage:
    return InboundMessage(
        platform=data["platform"], message_id=data["message_id"], chat_id=data["chat_id"],
        user_id=data["user_id"], text=data["text"], received_at=float(data["received_at"]),
        reply_handle=dict(data.get("reply_handle") or {}),
    )
