"""A local QQ open platform: token and passive-reply endpoints, and callbacks signed the way QQ signs them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.fake_platform import FakePlatformAPI, Recorded

APP_ID = "102012345"
# The secret of the platform's own op-13 example, so a validation over HTTP must reproduce its vector.
SECRET = "DG5g3B4j9X2KOErG"
TOKEN_PATH = "/app/getAppAccessToken"
GATEWAY_PATH = "/gateway/bot"
DATA = Path(__file__).resolve().parents[1] / "data" / "qq"
DUPLICATE_CODE = 40054005


def load(name: str) -> dict[str, Any]:
    """A recorded payload from tests/bot/platforms/data/qq/."""
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


def event(name: str, message_id: str | None = None, content: str | None = None) -> dict[str, Any]:
    """A recorded message event, optionally with another message id or text."""
    payload = load(name)
    if message_id is not None:
        payload["d"]["id"] = message_id
    if content is not None:
        payload["d"]["content"] = content
    return payload


def encode(payload: Any) -> bytes:
    # Unescaped UTF-8, as the platform sends it: the signature covers these exact bytes. A lone
    # surrogate (the fuzz draws them) passes through as the invalid bytes a hostile sender would send.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def signing_key(secret: str) -> Ed25519PrivateKey:
    """QQ's key for a bot secret, derived here on its own (not with bot.platforms.qq.crypto)."""
    raw = secret.encode()
    return Ed25519PrivateKey.from_private_bytes((raw * (32 // len(raw) + 1))[:32])


def signed_headers(
    body: bytes, *, secret: str = SECRET, timestamp: str | None = None, app_id: str | None = APP_ID
) -> dict[str, str]:
    """The headers of a genuine callback carrying `body`."""
    ts = str(int(time.time())) if timestamp is None else timestamp
    headers = {
        "X-Signature-Ed25519": signing_key(secret).sign(ts.encode() + body).hex(),
        "X-Signature-Timestamp": ts,
        "X-Signature-Method": "Ed25519",
        "User-Agent": "QQBot-Callback",
        "Content-Type": "application/json",
    }
    if app_id is not None:
        headers["X-Bot-Appid"] = app_id
    return headers


def reply_path(payload: dict[str, Any]) -> str:
    """Where QQ expects the passive reply to a recorded event."""
    d = payload["d"]
    if payload["t"] == "GROUP_AT_MESSAGE_CREATE":
        return f"/v2/groups/{d['group_openid']}/messages"
    if payload["t"] == "C2C_MESSAGE_CREATE":
        return f"/v2/users/{d['author']['user_openid']}/messages"
    return f"/channels/{d['channel_id']}/messages"


class QQOpenPlatform:
    """Token and message endpoints on a FakePlatformAPI.

    Tokens are numbered (`access-1`, `access-2`...). Like the real API, a repeated msg_id + msg_seq
    on a /v2 endpoint is refused with HTTP 400 and code 40054005.
    """

    def __init__(self, expires_in: str = "7200") -> None:
        self.api = FakePlatformAPI()
        self.expires_in = expires_in
        self.tokens_issued = 0
        self.accepted: list[Recorded] = []
        self._seen: set[tuple[str, Any, Any]] = set()
        self.api.on("POST", TOKEN_PATH, self._token)

    def accept_replies_for(self, *payloads: dict[str, Any]) -> None:
        for payload in payloads:
            self.api.on("POST", reply_path(payload), self._message)

    def serve_gateway(self, ws_url: str) -> None:
        self.api.on("GET", GATEWAY_PATH, {
            "url": ws_url, "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1},
        })

    def env(self, base: str, **extra: str) -> dict[str, str]:
        return {"QQ_APP_ID": APP_ID, "QQ_APP_SECRET": SECRET, "QQ_API_BASE": base,
                "QQ_TOKEN_URL": base + TOKEN_PATH, **extra}

    def _token(self, request: Recorded) -> web.Response:
        body = request.json()
        if body != {"appId": APP_ID, "clientSecret": SECRET}:
            return web.json_response({"code": 100016, "message": "invalid appid or secret"})
        self.tokens_issued += 1
        return web.json_response({"access_token": f"access-{self.tokens_issued}", "expires_in": self.expires_in})

    def _message(self, request: Recorded) -> web.Response:
        body = request.json()
        if request.path.startswith("/v2/"):
            key = (request.path, body.get("msg_id"), body.get("msg_seq"))
            if key in self._seen:
                return web.json_response({"message": "消息被去重，请检查请求msgseq", "code": DUPLICATE_CODE,
                                          "err_code": DUPLICATE_CODE, "trace_id": "0f1e2d"}, status=400)
            self._seen.add(key)
        self.accepted.append(request)
        return web.json_response({"id": f"reply-{len(self.accepted)}", "timestamp": "2024-10-15T16:33:16+08:00"})
