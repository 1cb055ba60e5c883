"""Slack request signing: v0 HMAC-SHA256 over the timestamp and the exact body."""

from __future__ import annotations

import hashlib
import hmac


def request_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """The X-Slack-Signature value Slack sends for this timestamp and body."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
