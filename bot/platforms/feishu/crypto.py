"""Feishu cryptography: the Encrypt Key's AES-256-CBC envelope and the callback and custom-bot signatures."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 16


class DecryptError(ValueError):
    """The `encrypt` field is not a valid ciphertext for this Encrypt Key."""


def decrypt(encrypt_key: str, encrypted: str) -> bytes:
    """The plaintext of an `{"encrypt": ...}` body: key = sha256(encrypt_key), IV = the first 16 bytes."""
    try:
        blob = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("not base64") from None
    if len(blob) < 2 * _BLOCK or len(blob) % _BLOCK:
        raise DecryptError("ciphertext length is not a whole number of blocks")
    key = hashlib.sha256(encrypt_key.encode()).digest()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(blob[:_BLOCK])).decryptor()
    padded = decryptor.update(blob[_BLOCK:]) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        # A wrong key shows up here: the last block decrypts to garbage padding.
        raise DecryptError("bad padding") from None


def callback_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """X-Lark-Signature: lowercase hex sha256(timestamp + nonce + encrypt_key + raw body); not an HMAC."""
    # Header values arrive decoded with surrogateescape: encoding them back the same way gives the
    # bytes that were sent (a non-UTF-8 nonce then fails the comparison instead of raising).
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8", "surrogateescape") + body).hexdigest()


def webhook_sign(secret: str, timestamp: int) -> str:
    """A custom bot's `sign`: base64(HMAC-SHA256) keyed with "timestamp\\nsecret" over an empty message."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
