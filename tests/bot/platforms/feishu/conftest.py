"""Feishu callbacks built the way Feishu builds them, checked by lark-oapi's dispatcher, and a bot to send them to."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
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


def message_path(message_id: str) -> str:
    """Where a message the app sent is updated (PATCH)."""
    return f"/open-apis/im/v1/messages/{message_id}"


def card_text(content: str) -> str:
    """The text a card (a message's `content` string) shows, checked to be an updatable card."""
    card = json.loads(content)
    assert card["config"]["update_multi"] is True
    [element] = card["elements"]
    assert element["tag"] == "div" and element["text"]["tag"] == "plain_text"
    return str(element["text"]["content"])


# What the Open Platform documents for message bodies and card updates (im-v1/message/patch).
MAX_TEXT_BODY = 150_000  # text messages: 150 KB (230025 past it)
MAX_CARD_BODY = 30_000  # cards and rich text: 30 KB
UPDATES_PER_SECOND = 5  # updates of one message (230020 past it)
UPDATE_WINDOW = 14 * 86400  # a message can be updated for 14 days after it was sent (230031 after)


@dataclass
class Sent:
    """A message the app sent: its type, its content as it reads now, and when it was sent."""

    msg_type: str
    content: str
    sent_at: float = field(default_factory=time.time)
    updates: deque[float] = field(default_factory=lambda: deque(maxlen=UPDATES_PER_SECOND))


def refusal(code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=400)


class FeishuAPI(FakePlatformAPI):
    """The Open Platform: issues tenant tokens, accepts replies to any message id (scripted codes first), and
    updates the cards it sent, checking what Feishu documents: the token, the body, the card's `update_multi`
    before and after, the size, five updates a second per message, the 14-day window."""

    def __init__(self, expire: int = 7200) -> None:
        super().__init__()
        self.expire = expire
        self.reply_codes: list[int] = []  # answered (one per reply) before code 0
        self.update_codes: list[int] = []  # answered (one per card update) before the checks
        self.sent: dict[str, Sent] = {}  # by message id
        self._by_uuid: dict[str, str] = {}
        self.on("POST", TOKEN_PATH, lambda _req: web.json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": TENANT_TOKEN, "expire": self.expire}
        ))

    def expect_reply(self, message_id: str) -> None:
        self.on("POST", reply_path(message_id), self._reply)

    def _reply(self, request: Recorded) -> web.Response:
        code = self.reply_codes.pop(0) if self.reply_codes else 0
        if code != 0:
            return refusal(code, "scripted failure")
        if request.headers.get("Authorization") != f"Bearer {TENANT_TOKEN}":
            return refusal(99991663, "Invalid access token for authorization")
        body = json.loads(request.body)
        limit = MAX_CARD_BODY if body.get("msg_type") == "interactive" else MAX_TEXT_BODY
        if len(request.body) > limit:
            return refusal(230025, "The length of the message content reaches its limit.")
        # At most one message per uuid within an hour. What Feishu answers for the repeat is not documented;
        # the stand-in gives the message the uuid already made.
        message_id = self._by_uuid.get(body.get("uuid")) or f"om_sent_{len(self.sent) + 1}"
        if message_id not in self.sent:
            self.sent[message_id] = Sent(str(body.get("msg_type")), str(body.get("content", "")))
            self._by_uuid[body.get("uuid")] = message_id
            self.on("PATCH", message_path(message_id), self._update)
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": message_id}})

    def _update(self, request: Recorded) -> web.Response:
        message = self.sent[request.path.rsplit("/", 1)[1]]
        if self.update_codes:
            return refusal(self.update_codes.pop(0), "scripted failure")
        if request.headers.get("Authorization") != f"Bearer {TENANT_TOKEN}":
            return refusal(99991663, "Invalid access token for authorization")
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return refusal(230001, "Content-Type must be application/json; charset=utf-8")
        body = json.loads(request.body)
        if not isinstance(body, dict) or not isinstance(body.get("content"), str):
            return refusal(230001, "content is required and must be a string")
        if len(request.body) > MAX_CARD_BODY:
            return refusal(230025, "The length of the message content reaches its limit.")
        if time.time() - message.sent_at > UPDATE_WINDOW:
            return refusal(230031, "Message can only be modified within 14 days after sending.")
        # Only shared cards are updated, and the card must say so before and after (Feishu documents the
        # rule, not its code; 230001 is its code for an invalid parameter).
        if message.msg_type != "interactive":
            return refusal(230001, "only a card (msg_type interactive) can be updated")
        for card in (json.loads(message.content), json.loads(body["content"])):
            if not isinstance(card, dict) or card.get("config", {}).get("update_multi") is not True:
                return refusal(230001, "only a card with config.update_multi true can be updated")
        now = time.monotonic()
        if len(message.updates) == UPDATES_PER_SECOND and now - message.updates[0] < 1.0:
            return refusal(230020, "This operation triggers the frequency limit.")
        message.updates.append(now)
        message.content = body["content"]
        return web.json_response({"code": 0, "msg": "success", "data": {}})


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
