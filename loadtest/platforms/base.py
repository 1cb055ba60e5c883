"""The shape every platform's callback builder shares."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SignedRequest:
    """One callback as the platform would send it, ready to post."""

    route: str  # the route template, which is also the name the request is reported under
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    method: str = "POST"

    @property
    def url_path(self) -> str:
        return f"{self.route}?{self.query}" if self.query else self.route


class CallbackBuilder(Protocol):
    """Builds message callbacks the bot must accept: valid signature, fresh timestamp, unique id."""

    name: str
    route: str

    def message(self, text: str, user: str, chat: str) -> SignedRequest:
        """A new inbound text message from `user` in `chat`, never repeating an event id."""
        ...


def unique_id(prefix: str = "") -> str:
    """An id no other request of any run reuses, so the bot's de-duplication never hides load."""
    return prefix + secrets.token_hex(12)


def now_s() -> int:
    return int(time.time())


def now_ms() -> int:
    return int(time.time() * 1000)
