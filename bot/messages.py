"""Platform-neutral values that flow through the bot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation, as the model sees it."""

    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Completion:
    """What a model backend answered, with the token counts it reported."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The backend that answered (its metric label); empty means the one the conversation called.
    backend: str = ""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A user's message from any platform, after verification and decoding."""

    platform: str
    message_id: str
    chat_id: str
    user_id: str
    text: str
    received_at: float
    # Whatever the platform needs to answer this message (reply token, session webhook...).
    reply_handle: dict[str, Any] = field(default_factory=dict)

    @property
    def session_key(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class Reply:
    """The bot's answer to one inbound message, ready for the platform to format."""

    inbound: InboundMessage
    text: str
    # True for an update of a streamed reply while the model is still writing; the finished reply is not partial.
    partial: bool = False
