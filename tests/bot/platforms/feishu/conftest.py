"""Feishu callbacks built the way Feishu builds them, checked by lark-oapi's dispatcher, and a bot to send them to."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lark_oapi import EventDispatcherHandler
from lark_oapi.core.model.raw_request import RawRequest
from lark_oapi.ws import client as lark_ws_client

from tests.bot.platforms.harness import (
    PlatformLoop,
    StartPlatform,
    start_platform,  # noqa: F401  (fixture)
)
from tests.support.fake_platform import FakePlatformAPI, Recorded

# lark-oapi makes (and sets) an event loop when imported and never closes it; nothing of ours runs on it.
if not lark_ws_client.loop.is_running():
    lark_ws_client.loop.close()
    asyncio.set_event_loop(None)

DATA = Path(__file__).parents[1] / "data" / "feishu"
# The recorded events carry the token of Feishu's documentation samples.
TOKEN = "rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV"
APP_ID = "cli_9f5343c580712544"
ENCRYPT_KEY = "kQ3xR8vN2pL5wZ9tYb4mH7cJ6fD1sGa0"
APP_SECRET = "feishu-app-secret-0d9c8b7a"
TENANT_TOKEN = "t-g1044ghJRUIJJ5ELPZN2YM4XUV2KBZYBYSY4LKJY"
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
SECRETS = (ENCRYPT_KEY, APP_SECRET, TOKEN, TENANT_TOKEN)


def event(name: str, **header: Any) -> dict[str, Any]:
    """A recorded callback payload; `header` overrides fields of a schema 2.0 header."""
    payload: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    if header:
        payload["header"].update(header)
    return payload


def text_event(event_id: str, text: str = "@_user_1 hello", message_id: str = "om_reply_target") -> dict[str, Any]:
    payload = event("im_message_receive_v1", event_id=event_id)
    payload["event"]["message"]["content"] = json.dumps({"text": text})
    payload["event"]["message"]["message_id"] = message_id
    return payload


def encrypt(plaintext: bytes, key: str = ENCRYPT_KEY) -> str:
    """Feishu's envelope: base64(IV || AES-256-CBC(sha256(key), PKCS#7(plaintext)))."""
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(hashlib.sha256(key.encode()).digest()), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def sign(
    body: bytes, *, key: str = ENCRYPT_KEY, timestamp: int | None = None, nonce: str = "13f2a6c9"
) -> dict[str, str]:
    """The three headers Feishu adds when an Encrypt Key is set."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hashlib.sha256((stamp + nonce + key).encode() + body).hexdigest()
    return {"X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": nonce, "X-Lark-Signature": signature,
            "Content-Type": "application/json"}


def encrypted_callback(payload: dict[str, Any], **sign_args: Any) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"encrypt": encrypt(orjson.dumps(payload))})
    return body, sign(body, **sign_args)


def lark_status(body: bytes, headers: dict[str, str], encrypt_key: str = ENCRYPT_KEY, token: str = TOKEN) -> int:
    """What lark-oapi's event dispatcher answers for these exact bytes: 200 accepted, 500 refused."""
    handler = (
        EventDispatcherHandler.builder(encrypt_key, token)
        .register_p2_im_message_receive_v1(lambda _event: None)
        .register_p2_customized_event("im.chat.member.user.added_v1", lambda _event: None)
        .register_p1_customized_event("message", lambda _event: None)
        .build()
    )
    request = RawRequest()
    request.uri = "/feishu/event"
    request.headers = dict(headers)
    request.body = body
    return int(handler.do(request).status_code)


def reply_path(message_id: str) -> str:
    return f"/open-apis/im/v1/messages/{message_id}/reply"


class FeishuAPI(FakePlatformAPI):
    """The Open Platform: issues tenant tokens, accepts replies to any message id (scripted codes first)."""

    def __init__(self, expire: int = 7200) -> None:
        super().__init__()
        self.expire = expire
        self.reply_codes: list[int] = []  # answered (one per reply) before code 0
        self.on("POST", TOKEN_PATH, lambda _req: web.json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": TENANT_TOKEN, "expire": self.expire}
        ))

    def expect_reply(self, message_id: str) -> None:
        self.on("POST", reply_path(message_id), self._reply)

    def _reply(self, _request: Recorded) -> web.Response:
        code = self.reply_codes.pop(0) if self.reply_codes else 0
        return web.json_response({"code": code, "msg": "ok" if code == 0 else "scripted failure",
                                  "data": {"message_id": "om_answer"}}, status=200 if code == 0 else 400)


def env(base: str) -> dict[str, str]:
    """The FEISHU_* settings with the Open Platform at `base`."""
    return {"FEISHU_APP_ID": APP_ID, "FEISHU_APP_SECRET": APP_SECRET, "FEISHU_VERIFICATION_TOKEN": TOKEN,
            "FEISHU_ENCRYPT_KEY": ENCRYPT_KEY, "FEISHU_API_BASE": base}


def env_without_encrypt_key(base: str) -> dict[str, str]:
    return {key: value for key, value in env(base).items() if key != "FEISHU_ENCRYPT_KEY"}


@pytest.fixture
def api() -> FeishuAPI:
    return FeishuAPI()


@pytest.fixture
async def feishu(start_platform: StartPlatform, api: FeishuAPI) -> PlatformLoop:
    return await start_platform("feishu", env, api)
