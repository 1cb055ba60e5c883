"""DingTalk signatures: the outgoing-robot callback `sign` and the custom robot's URL `sign`."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote_plus


def sign(secret: str, timestamp_ms: int | str) -> str:
    """base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret)): the callback's `sign` header."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def robot_url_sign(secret: str, timestamp_ms: int) -> str:
    """The same signature URL-encoded, as a custom robot's `sign` query parameter expects it."""
    return quote_plus(sign(secret, timestamp_ms))
