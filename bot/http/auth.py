"""The one bearer-token check: the chat API's keys and the Alertmanager receiver's token."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import web

from bot.errors import Unauthorized


def require_bearer(request: web.Request, secrets: Iterable[str]) -> None:
    """Require `Authorization: Bearer <secret>` for one of `secrets` (several, for rotation)."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("missing bearer token")
    # Bytes, because compare_digest refuses non-ASCII str (headers can be latin-1).
    token = presented.strip().encode("utf-8", "surrogateescape")
    # Compare against every secret, without stopping early, so timing reveals nothing.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(token, secret.encode())
    if not matched:
        raise Unauthorized("invalid bearer token")
