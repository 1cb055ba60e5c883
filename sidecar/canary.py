"""The canary split: a stable hash of the user picks the same side for that user every time."""

from __future__ import annotations

import hashlib

import orjson

# Resolution of the split: hundredths of a percent.
_BUCKETS = 10_000


class CanarySplit:
    """Send `percent` % of users to the canary; a user's side never changes while the percentage holds.

    Raising the percentage only moves users from stable to canary, never back, because a user
    is on the canary exactly when their bucket is below the threshold.
    """

    def __init__(self, percent: float) -> None:
        self.percent = percent
        self._threshold = round(percent * _BUCKETS / 100)

    def bucket(self, user: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(user, digest_size=8).digest(), "big") % _BUCKETS

    def is_canary(self, user: bytes) -> bool:
        return self.bucket(user) < self._threshold


def user_key(header_user: bytes | None, body_user: bytes | None, client_ip: str) -> bytes:
    """Who the request is for: X-User-ID, else the chat body's user_id, else the client address."""
    if header_user:
        return b"u:" + header_user
    if body_user:
        return b"u:" + body_user
    return b"ip:" + client_ip.encode()


def user_from_chat_body(body: bytes) -> bytes | None:
    """The `user_id` of a chat API JSON body, or None when there is none (or the body is not JSON)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict):
        user = data.get("user_id")
        if isinstance(user, str) and user:
            return user.encode()
    return None
