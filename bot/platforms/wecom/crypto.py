"""WeCom callback cryptography: the SHA-1 msg_signature and AES-256-CBC with 32-byte PKCS#7 blocks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# WeCom pads to 32-byte blocks (pads of 1..32), not AES's 16.
PAD_BLOCK = 32
_RANDOM_PREFIX = 16


class DecryptError(ValueError):
    """Why a ciphertext was refused; the text never holds key material or plaintext."""


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key behind the console's 43-character EncodingAESKey."""
    return base64.b64decode(encoding_aes_key + "=")


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """sha1 of the four values sorted and joined, lowercase hex."""
    return hashlib.sha1("".join(sorted((token, timestamp, nonce, encrypt))).encode()).hexdigest()


def decrypt(key: bytes, encrypt: str) -> tuple[bytes, str]:
    """Decrypt an Encrypt value (or echostr) into (message, receiveid).

    Layout of the plaintext: random(16) | message length (4 bytes, big-endian) | message | receiveid.
    """
    try:
        blob = base64.b64decode(encrypt, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("ciphertext is not base64") from None
    if not blob or len(blob) % 16:
        raise DecryptError("ciphertext is truncated: not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    content = _unpad(decryptor.update(blob) + decryptor.finalize())
    header = _RANDOM_PREFIX + 4
    if len(content) < header:
        raise DecryptError("plaintext shorter than its fixed header")
    (length,) = struct.unpack(">I", content[_RANDOM_PREFIX:header])
    if header + length > len(content):
        raise DecryptError("message length field exceeds the plaintext")
    try:
        receiveid = content[header + length:].decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptError("receiveid is not UTF-8") from None
    return content[header:header + length], receiveid


def _unpad(plain: bytes) -> bytes:
    # Validated by hand: a stock 16-byte unpadder refuses WeCom's pads of 17..32, and skipping
    # the check (as some SDKs do) would let a corrupted ciphertext through as garbage text.
    pad = plain[-1]
    if not 1 <= pad <= PAD_BLOCK or pad > len(plain) or plain[-pad:] != bytes([pad]) * pad:
        raise DecryptError("bad PKCS#7 padding")
    return plain[:-pad]
