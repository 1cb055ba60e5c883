"""Telegram webhook authentication: the secret token given to setWebhook, echoed in a header."""

from __future__ import annotations

import re

from bot.platforms.checks import secrets_match

SECRET_TOKEN_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SECRET_TOKEN_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,256}")


def secret_token_valid(presented: str | None, expected: str) -> bool:
    """True when the header carries the configured secret token (constant time)."""
    return presented is not None and secrets_match(presented, expected)
