"""The one credential check: the chat API's keys and the Alertmanager receiver's token."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import web

from bot.errors import Unauthorized


def require_bearer(request: web.Request, secrets: Iterable[str], *, x_api_key: bool = False) -> bytes:
    """Require `Authorization: Bearer <secret>` for one of `secrets` (several, for rotation).

    With `x_api_key`, an `X-API-Key: <secret>` header is accepted too (the chat API: the
    sidecar's `api_key` rate limits read it). Returns the credential that matched.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        presented = request.headers.get("X-API-Key", "") if x_api_key else ""
    if not presented.strip():
        raise Unauthorized("missing bearer token or X-API-Key" if x_api_key else "missing bearer token")
    # Bytes, because compare_digest refuses non-ASCII str (headers can be latin-1).
    token = presented.strip().encode("utf-8", "surrogateescape")
    # Compare against every secret, without stopping early, so timing reveals nothing.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(token, secret.encode())
    if not matched:
        raise Unauthorized("invalid bearer token")
    return token
