"""Each platform's load-test callbacks verify under the platform's own formulas, checked independently."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from loadtest.platforms.dingtalk import DingTalkCallbacks
from loadtest.platforms.feishu import FeishuCallbacks
from loadtest.platforms.qq import QQCallbacks, signing_key
from loadtest.platforms.registry import PLATFORMS, builder, missing_settings
from loadtest.platforms.slack import SlackCallbacks
from loadtest.platforms.telegram import TelegramCallbacks
from loadtest.platforms.wecom import WeComCallbacks

ENV = {
    "FEISHU_VERIFICATION_TOKEN": "vtoken", "FEISHU_ENCRYPT_KEY": "test key", "FEISHU_APP_ID": "cli_1",
    "DINGTALK_APP_SECRET": "ding-secret", "DINGTALK_API_BASE": "http://127.0.0.1:9/",
    "WECOM_CORP_ID": "ww-corp", "WECOM_TOKEN": "wtoken",
    "WECOM_ENCODING_AES_KEY": base64.b64encode(bytes(range(32))).decode().rstrip("="),
    "QQ_APP_ID": "102000", "QQ_APP_SECRET": "DG5g3B4j9X2KOErG",
    "SLACK_SIGNING_SECRET": "slack-secret", "TELEGRAM_SECRET_TOKEN": "tg_secret-1",
}


def feishu_decrypt(key: str, blob: str) -> bytes:
    """docs/protocols.md's Feishu decryption, written out here; anchored on the official vector below."""
    raw = base64.b64decode(blob)
    decryptor = Cipher(algorithms.AES(hashlib.sha256(key.encode()).digest()), modes.CBC(raw[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(raw[16:]) + decryptor.finalize()) + unpadder.finalize()


def test_feishu_decryption_here_reproduces_the_official_vector() -> None:
    assert feishu_decrypt("test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=") == b"hello world"


def test_feishu_callbacks_are_encrypted_signed_and_carry_the_token() -> None:
    req = FeishuCallbacks.from_env(ENV).message("你好 bot", "u1", "c1")
    assert req.route == "/feishu/event"
    h = req.headers
    expected = hashlib.sha256(
        (h["X-Lark-Request-Timestamp"] + h["X-Lark-Request-Nonce"] + "test key").encode() + req.body
    ).hexdigest()
    assert h["X-Lark-Signature"] == expected
    event = json.loads(feishu_decrypt("test key", json.loads(req.body)["encrypt"]))
    assert event["header"]["token"] == "vtoken" and event["header"]["event_type"] == "im.message.receive_v1"
    assert json.loads(event["event"]["message"]["content"]) == {"text": "你好 bot"}


def test_feishu_without_an_encrypt_key_sends_plain_json() -> None:
    req = FeishuCallbacks.from_env({"FEISHU_VERIFICATION_TOKEN": "vt"}).message("hi", "u", "c")
    assert "X-Lark-Signature" not in req.headers and json.loads(req.body)["header"]["token"] == "vt"


def test_each_callback_has_a_fresh_event_id_so_deduplication_never_hides_load() -> None:
    cb = FeishuCallbacks.from_env({"FEISHU_VERIFICATION_TOKEN": "vt"})
    ids = {json.loads(cb.message("hi", "u", "c").body)["header"]["event_id"] for _ in range(50)}
    assert len(ids) == 50


def test_qq_key_derivation_reproduces_the_official_op13_vector() -> None:
    signature = signing_key("DG5g3B4j9X2KOErG").sign(b"1725442341Arq0D5A61EgUu4OxUvOp").hex()
    assert signature == (
        "87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d0"
        "1bcfcadc0842edac85e85205028a1132afe09280305f13aa6909ffc2d652c706"
    )


def test_qq_dispatches_are_signed_over_timestamp_and_body() -> None:
    req = QQCallbacks.from_env(ENV).message("hello", "member1", "group1")
    public = signing_key("DG5g3B4j9X2KOErG").public_key()
    signature = bytes.fromhex(req.headers["X-Signature-Ed25519"])
    assert len(signature) == 64 and signature[63] & 0xE0 == 0
    public.verify(signature, req.headers["X-Signature-Timestamp"].encode() + req.body)  # raises if wrong
    body = json.loads(req.body)
    assert body["op"] == 0 and body["t"] == "GROUP_AT_MESSAGE_CREATE" and body["d"]["content"] == " hello"


def test_dingtalk_sign_is_hmac_sha256_of_timestamp_newline_secret() -> None:
    req = DingTalkCallbacks.from_env(ENV).message("hi", "staff1", "c1")
    ts = req.headers["timestamp"]
    mac = hmac.new(b"ding-secret", f"{ts}\nding-secret".encode(), hashlib.sha256).digest()
    assert req.headers["sign"] == base64.b64encode(mac).decode()
    body = json.loads(req.body)
    assert body["senderStaffId"] == "staff1" and body["sessionWebhook"].startswith("http://127.0.0.1:9/robot/")


def wecom_decrypt(aes_key_43: str, encrypted: str) -> tuple[bytes, bytes]:
    """docs/protocols.md's WeCom layout, written out here rather than taken from wechatpy."""
    key = base64.b64decode(aes_key_43 + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    pad = plain[-1]
    assert 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad  # PKCS#7 to 32-byte blocks
    body = plain[16:-pad]
    (length,) = struct.unpack(">I", body[:4])
    return body[4 : 4 + length], body[4 + length :]


def test_wecom_callbacks_built_by_wechatpy_decrypt_and_verify_by_the_documented_formulas() -> None:
    req = WeComCallbacks.from_env(ENV).message("报警了", "zhangsan", "c1")
    query = dict(urllib.parse.parse_qsl(req.query))
    encrypted = ET.fromstring(req.body).findtext("Encrypt") or ""
    expected = hashlib.sha1("".join(sorted(["wtoken", query["timestamp"], query["nonce"], encrypted])).encode())
    assert query["msg_signature"] == expected.hexdigest()
    message, receive_id = wecom_decrypt(ENV["WECOM_ENCODING_AES_KEY"], encrypted)
    assert receive_id == b"ww-corp"
    xml = ET.fromstring(message)
    assert (xml.findtext("Content"), xml.findtext("FromUserName"), xml.findtext("MsgType")) == (
        "报警了", "zhangsan", "text"
    )


def test_slack_requests_signed_by_slack_sdk_match_the_v0_formula() -> None:
    req = SlackCallbacks.from_env(ENV).message("deploy done?", "U1", "C1")
    ts = req.headers["X-Slack-Request-Timestamp"]
    mac = hmac.new(b"slack-secret", f"v0:{ts}:".encode() + req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Slack-Signature"] == "v0=" + mac
    assert json.loads(req.body)["event"]["text"] == "deploy done?"


def test_telegram_updates_carry_the_secret_token_and_increasing_update_ids() -> None:
    cb = TelegramCallbacks.from_env(ENV)
    first, second = cb.message("a", "u", "c"), cb.message("b", "u", "c")
    assert first.headers["X-Telegram-Bot-Api-Secret-Token"] == "tg_secret-1"
    assert json.loads(second.body)["update_id"] == json.loads(first.body)["update_id"] + 1


@pytest.mark.parametrize("name", PLATFORMS)
def test_every_platform_builds_from_its_settings_and_names_the_ones_missing(name: str) -> None:
    assert missing_settings(name, ENV) == []
    assert builder(name, ENV).message("hi", "u", "c").route.startswith(f"/{name}/")
    assert missing_settings(name, {}) != []
