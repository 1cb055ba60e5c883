"""Which API keys are real: a rate-limit budget keyed by a credential exists only for valid ones.

The bot accepts `Authorization: Bearer <key>` (or `X-API-Key: <key>`) for any key in BOT_API_KEY. The sidecar is given
the same list (BOT_API_KEY) or only the SHA-256 digests of the keys (SIDECAR_API_KEY_HASHES),
and keeps nothing but the digests. A request presenting anything else is counted by its address,
so a client cannot mint itself a fresh budget with every made-up token.
"""

from __future__ import annotations

import hashlib
import re

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


def key_digest(key: str) -> str:
    """The SHA-256 digest (hex) an operator puts in SIDECAR_API_KEY_HASHES for a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def is_key_digest(value: str) -> bool:
    return _HEX_SHA256.fullmatch(value) is not None


class ApiKeys:
    """The SHA-256 digests of the valid keys; `identify` names the key a request presents, if valid."""

    __slots__ = ("_digests",)

    def __init__(self, digests: frozenset[bytes]) -> None:
        self._digests = digests

    @classmethod
    def from_settings(cls, keys: tuple[str, ...], hex_digests: tuple[str, ...]) -> ApiKeys:
        digests = {hashlib.sha256(key.encode()).digest() for key in keys}
        digests.update(bytes.fromhex(value) for value in hex_digests)
        return cls(frozenset(digests))

    def __bool__(self) -> bool:
        return bool(self._digests)

    def identify(self, authorization: bytes) -> str | None:
        """A stable id for the valid bearer key in an `Authorization` value; None for anything else.

        The id is a digest of the digest: it names the key in counters and Redis without being
        the key, or the value an operator configured.
        """
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        digest = hashlib.sha256(token.strip()).digest()
        if digest not in self._digests:
            return None
        return "k:" + hashlib.blake2b(digest, digest_size=12).hexdigest()
