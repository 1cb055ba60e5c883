"""Feishu `im.message.receive_v1` callbacks: token, and with an Encrypt Key AES-256-CBC plus X-Lark-Signature."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from loadtest.platforms.base import SignedRequest, now_ms, now_s, unique_id

SETTINGS = ("FEISHU_VERIFICATION_TOKEN",)


def encrypt(encrypt_key: str, plaintext: bytes) -> str:
    """base64(IV | AES-256-CBC(sha256(key), PKCS#7(plaintext))), the inverse of Feishu's decryptor."""
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """Plain SHA-256 (not HMAC) over timestamp + nonce + key + raw body, lowercase hex."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


@dataclass(frozen=True)
class FeishuCallbacks:
    verification_token: str
    encrypt_key: str | None
    app_id: str

    name = "feishu"
    route = "/feishu/event"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FeishuCallbacks:
        return cls(environ["FEISHU_VERIFICATION_TOKEN"], environ.get("FEISHU_ENCRYPT_KEY") or None,
                   environ.get("FEISHU_APP_ID", "cli_loadtest"))

    def message(self, text: str, user: str, chat: str) -> SignedRequest:
        event = {
            "schema": "2.0",
            "header": {
                "event_id": unique_id(), "event_type": "im.message.receive_v1", "create_time": str(now_ms()),
                "token": self.verification_token, "app_id": self.app_id, "tenant_key": "loadtest",
            },
            "event": {
                "sender": {
                    "sender_id": {"open_id": f"ou_{user}", "union_id": f"on_{user}", "user_id": user},
                    "sender_type": "user", "tenant_key": "loadtest",
                },
                "message": {
                    "message_id": unique_id("om_"), "chat_id": f"oc_{chat}", "chat_type": "p2p",
                    "message_type": "text", "content": json.dumps({"text": text}, ensure_ascii=False),
                    "create_time": str(now_ms()),
                },
            },
        }
        plain = json.dumps(event, ensure_ascii=False).encode()
        if self.encrypt_key is None:
            return SignedRequest(self.route, plain, {"Content-Type": "application/json"})
        body = json.dumps({"encrypt": encrypt(self.encrypt_key, plain)}).encode()
        timestamp, nonce = str(now_s()), unique_id()
        return SignedRequest(self.route, body, {
            "Content-Type": "application/json",
            "X-Lark-Request-Timestamp": timestamp,
            "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": signature(timestamp, nonce, self.encrypt_key, body),
        })
