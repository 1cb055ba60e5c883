"""Feishu cryptography against the official vector and lark-oapi's own decryptor and dispatcher."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest
from lark_oapi.core.utils.decryptor import AESCipher

from bot.platforms.feishu.crypto import DecryptError, callback_signature, decrypt, webhook_sign
from tests.bot.platforms.feishu.conftest import ENCRYPT_KEY, encrypt, lark_status, text_event


def test_the_official_vector_decrypts_to_hello_world() -> None:
    assert decrypt("test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=") == b"hello world"


@pytest.mark.parametrize("plaintext", [b"", b"x" * 15, b"x" * 16, "{\"text\":\"你好\"}".encode()])
def test_an_envelope_lark_decrypts_decrypts_the_same_here(plaintext: bytes) -> None:
    envelope = encrypt(plaintext)
    assert AESCipher(ENCRYPT_KEY).decrypt_str(envelope).encode() == plaintext
    assert decrypt(ENCRYPT_KEY, envelope) == plaintext


def _corrupt(envelope: str, how: str) -> str:
    blob = base64.b64decode(envelope)
    if how == "truncated":
        return base64.b64encode(blob[:-5]).decode()
    if how == "iv only":
        return base64.b64encode(blob[:16]).decode()
    if how == "last block flipped":
        return base64.b64encode(blob[:-1] + bytes([blob[-1] ^ 0xFF])).decode()
    return "not*base64!"


@pytest.mark.parametrize("how", ["truncated", "iv only", "last block flipped", "not base64"])
def test_a_damaged_envelope_is_refused_here_and_by_lark(how: str) -> None:
    envelope = _corrupt(encrypt(b'{"type":"url_verification"}'), how)
    with pytest.raises(DecryptError):
        decrypt(ENCRYPT_KEY, envelope)
    with pytest.raises(ValueError):
        AESCipher(ENCRYPT_KEY).decrypt_str(envelope)


def test_an_envelope_for_another_key_is_refused() -> None:
    with pytest.raises(DecryptError):
        decrypt(ENCRYPT_KEY, encrypt(b'{"challenge":"c","token":"t","type":"url_verification"}', key="other key"))


def test_a_request_signed_here_is_accepted_by_lark_and_a_changed_byte_is_not() -> None:
    body = orjson.dumps({"encrypt": encrypt(orjson.dumps(text_event("sig-1")))})
    headers = {"X-Lark-Request-Timestamp": "1700000000", "X-Lark-Request-Nonce": "n0nce"}
    headers["X-Lark-Signature"] = callback_signature("1700000000", "n0nce", ENCRYPT_KEY, body)
    assert lark_status(body, headers) == 200
    headers["X-Lark-Request-Nonce"] = "n0ncf"
    assert lark_status(body, headers) == 500


def test_a_nonce_that_is_not_utf8_is_signed_over_the_bytes_sent_instead_of_raising() -> None:
    # The server decodes header bytes with surrogateescape: b"\x80" arrives as "\udc80".
    body = b'{"encrypt":"x"}'
    expected = hashlib.sha256(b"1700000000" + b"\x80n" + ENCRYPT_KEY.encode() + body).hexdigest()
    assert callback_signature("1700000000", "\udc80n", ENCRYPT_KEY, body) == expected


def test_the_custom_bot_sign_follows_the_documented_recipe() -> None:
    # Feishu's sample: HMAC-SHA256 keyed with "timestamp\nsecret" over nothing, base64.
    key = "1599360473\nsecret-abc".encode()
    expected = base64.b64encode(hmac.new(key, digestmod=hashlib.sha256).digest()).decode()
    assert webhook_sign("secret-abc", 1599360473) == expected
    assert webhook_sign("secret-abc", 1599360474) != expected
