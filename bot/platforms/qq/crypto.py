"""QQ's Ed25519 callback signatures: key derivation from the bot secret, signing and verification."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SEED_SIZE = 32
SIGNATURE_SIZE = 64


def derive_key(secret: str) -> Ed25519PrivateKey:
    """The bot's Ed25519 key: the secret repeated until it is at least 32 bytes, then its first 32."""
    seed = secret.encode()
    if not seed:
        raise ValueError("the bot secret is empty")
    while len(seed) < SEED_SIZE:
        seed *= 2
    return Ed25519PrivateKey.from_private_bytes(seed[:SEED_SIZE])


def sign_hex(key: Ed25519PrivateKey, message: bytes) -> str:
    return key.sign(message).hex()


def parse_signature(header: str) -> bytes | None:
    """The raw signature from the X-Signature-Ed25519 header, or None when it cannot be one.

    The top three bits of the last byte must be clear: a set bit means S is not reduced, the
    malleable form that the platform's own check also refuses.
    """
    try:
        signature = bytes.fromhex(header.strip())
    except ValueError:
        return None
    if len(signature) != SIGNATURE_SIZE or signature[63] & 0xE0:
        return None
    return signature


def is_valid(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def callback_message(timestamp: str, body: bytes) -> bytes:
    """What the platform signs for every callback: the timestamp header followed by the raw body."""
    return timestamp.encode() + body


def validation_answer(key: Ed25519PrivateKey, event_ts: str, plain_token: str) -> dict[str, str]:
    """The answer to op 13 (callback URL validation): the token and our signature of ts + token."""
    return {"plain_token": plain_token, "signature": sign_hex(key, (event_ts + plain_token).encode())}
