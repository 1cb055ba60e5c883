"""QQ's Ed25519 scheme against the platform's published vectors and keys derived independently."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bot.platforms.qq.crypto import (
    callback_message,
    derive_key,
    is_valid,
    parse_signature,
    sign_hex,
    validation_answer,
)
from tests.bot.platforms.qq.fake_qq import load, signing_key


def public_bytes(key: object) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[attr-defined]


def test_the_official_callback_validation_vector_is_reproduced() -> None:
    vector = load("callback_validation.json")
    d = vector["payload"]["d"]

    answer = validation_answer(derive_key(vector["secret"]), d["event_ts"], d["plain_token"])

    assert answer == {"plain_token": d["plain_token"], "signature": vector["signature"]}


def test_the_official_sdk_signed_body_verifies_and_a_changed_byte_does_not() -> None:
    vector = load("body_signature.json")
    public_key = derive_key(vector["secret"]).public_key()
    signature = parse_signature(vector["signature"])
    body = vector["body"].encode()
    assert signature is not None

    assert is_valid(public_key, signature, callback_message(vector["timestamp"], body))
    assert not is_valid(public_key, signature, callback_message(vector["timestamp"], body.replace(b"}", b" }", 1)))
    assert not is_valid(public_key, signature, callback_message(str(int(vector["timestamp"]) + 1), body))


@pytest.mark.parametrize("secret", ["a", "DG5g3B4j9X2KOErG", "x" * 31, "y" * 32, "z" * 33, "秘钥"])
def test_the_key_is_the_secret_repeated_to_32_bytes(secret: str) -> None:
    assert public_bytes(derive_key(secret)) == public_bytes(signing_key(secret))


def test_a_signature_made_with_cryptography_directly_verifies_only_for_its_message_and_secret() -> None:
    message = b"1725442341" + b'{"op":0}'
    signature = parse_signature(signing_key("bot-secret-one").sign(message).hex())
    assert signature is not None

    assert is_valid(derive_key("bot-secret-one").public_key(), signature, message)
    assert not is_valid(derive_key("bot-secret-two").public_key(), signature, message)
    assert sign_hex(derive_key("bot-secret-one"), message) == signing_key("bot-secret-one").sign(message).hex()


def test_signature_headers_that_cannot_be_a_signature_are_refused_before_any_crypto() -> None:
    genuine = signing_key("s").sign(b"m")
    assert parse_signature(genuine.hex()) == genuine
    assert parse_signature(genuine.hex().upper()) == genuine
    assert parse_signature("") is None
    assert parse_signature("zz" * 64) is None
    assert parse_signature(genuine.hex()[:-2]) is None  # 63 bytes
    assert parse_signature(genuine.hex() + "00") is None  # 65 bytes
    # A set bit among the top three of the last byte: the non-canonical (malleable) form.
    high = genuine[:63] + bytes([genuine[63] | 0x20])
    assert parse_signature(high.hex()) is None


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        derive_key("")
