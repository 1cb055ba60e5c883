"""WeCom crypto against the official samples and wechatpy, including pads of 17..32 and corrupted ciphertexts."""

from __future__ import annotations

import base64
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml.ElementTree import fromstring
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import PrpCrypto

from bot.platforms.wecom.crypto import DecryptError, aes_key, decrypt, msg_signature
from tests.bot.platforms.wecom.conftest import AES_KEY, CORP_ID, OFFICIAL, TOKEN, recorded

KEY = aes_key(AES_KEY)


def raw_encrypt(plaintext: bytes) -> str:
    """AES-256-CBC with WeCom's key and IV and no padding added: the caller lays out every byte."""
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).encryptor()
    return base64.b64encode(encryptor.update(plaintext) + encryptor.finalize()).decode()


def wechatpy_encrypt(message: str, receiveid: str = CORP_ID) -> str:
    encrypt = PrpCrypto(KEY).encrypt(message, receiveid)
    return encrypt.decode() if isinstance(encrypt, bytes) else encrypt


def layout(message: bytes, receiveid: bytes = CORP_ID.encode(), length: int | None = None) -> bytes:
    size = len(message) if length is None else length
    return os.urandom(16) + struct.pack(">I", size) + message + receiveid


def test_the_official_url_verification_sample_decrypts_to_its_echo() -> None:
    sample = OFFICIAL["verify_url"]
    assert msg_signature(TOKEN, sample["timestamp"], sample["nonce"], sample["echostr"]) == sample["msg_signature"]
    assert decrypt(KEY, sample["echostr"]) == (sample["plaintext"].encode(), CORP_ID)


def test_the_official_message_sample_decrypts_to_the_recorded_text_message() -> None:
    sample = OFFICIAL["message"]
    encrypt = fromstring(sample["body"]).findtext("Encrypt")
    assert msg_signature(TOKEN, sample["timestamp"], sample["nonce"], encrypt) == sample["msg_signature"]
    assert decrypt(KEY, encrypt) == (recorded("text.xml").encode(), CORP_ID)


@pytest.mark.parametrize("size", range(0, 40))
def test_what_wechatpy_encrypts_decrypts_whatever_the_pad_length(size: int) -> None:
    # 40 consecutive message sizes walk the 32-byte pad through every value 1..32.
    message = "x" * size
    assert decrypt(KEY, wechatpy_encrypt(message)) == (message.encode(), CORP_ID)


def test_multibyte_text_keeps_its_length_in_bytes() -> None:
    message = "你好，企业微信 👋"
    assert decrypt(KEY, wechatpy_encrypt(message)) == (message.encode(), CORP_ID)


def test_the_signature_matches_wechatpys() -> None:
    for args in [("t", "1", "n", "e"), (TOKEN, "1409659589", "263014780", "a+b/c=")]:
        assert msg_signature(*args) == _get_signature(*args)


def test_a_truncated_ciphertext_is_refused() -> None:
    blob = base64.b64decode(wechatpy_encrypt("hello"))
    with pytest.raises(DecryptError, match="truncated"):
        decrypt(KEY, base64.b64encode(blob[:-5]).decode())


@pytest.mark.parametrize(
    "pad", [b"\x00" * 32, b"\x21" * 32, b"\x05\x05\x05\x07\x05", b"\x03" * 2 + b"\x1f" * 29 + b"\x20"],
    ids=["zero", "33", "inconsistent", "short-run"],
)
def test_bad_padding_is_refused(pad: bytes) -> None:
    body = layout(b"hello")
    filler = (-(len(body) + len(pad))) % 32
    plaintext = body + b"\x00" * filler + pad
    with pytest.raises(DecryptError, match="padding"):
        decrypt(KEY, raw_encrypt(plaintext))


def test_a_length_field_beyond_the_plaintext_is_refused() -> None:
    plaintext = layout(b"hello", length=10_000)
    pad = 32 - len(plaintext) % 32
    with pytest.raises(DecryptError, match="length"):
        decrypt(KEY, raw_encrypt(plaintext + bytes([pad]) * pad))


def test_text_that_is_not_base64_is_refused() -> None:
    with pytest.raises(DecryptError, match="base64"):
        decrypt(KEY, "not base64 at all!")


def test_the_receiveid_is_returned_for_the_caller_to_check() -> None:
    assert decrypt(KEY, wechatpy_encrypt("hi", "wwSomeOtherCorp"))[1] == "wwSomeOtherCorp"
