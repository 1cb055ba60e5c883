"""Callback checks several platforms share: timestamp window, constant-time comparison, JSON body."""

from __future__ import annotations

import hmac
from typing import Any

import orjson

from bot.errors import WebhookRejected


def secrets_match(presented: str, expected: str) -> bool:
    """Compare in constant time; bytes, because compare_digest refuses non-ASCII str (headers can be latin-1)."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), expected.encode())


def require_fresh(timestamp: str | None, now: float, max_skew: int) -> None:
    """Refuse a callback whose timestamp (unix seconds) is missing, not a number, or too far from now.

    A captured callback replayed later carries an old timestamp; the signature covers it.
    """
    try:
        sent_at = int(timestamp or "")
    except ValueError:
        raise WebhookRejected("stale_timestamp", "timestamp missing or not a number", status=401) from None
    if abs(now - sent_at) > max_skew:
        raise WebhookRejected("stale_timestamp", f"timestamp more than {max_skew}s from now", status=401)


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a `malformed` rejection that never echoes the body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookRejected("malformed", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise WebhookRejected("malformed", "body is not a JSON object")
    return data
