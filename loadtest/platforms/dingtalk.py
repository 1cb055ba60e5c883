"""DingTalk outgoing-robot callbacks: `timestamp` and `sign` = base64(HMAC-SHA256(secret, ts + "\n" + secret))."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from loadtest.platforms.base import SignedRequest, now_ms, unique_id

SETTINGS = ("DINGTALK_APP_SECRET",)
# sessionWebhook is where the bot answers; pointing it at DINGTALK_API_BASE keeps replies local in tests.
_DEFAULT_API_BASE = "https://oapi.dingtalk.com"


def sign(timestamp_ms: str, app_secret: str) -> str:
    digest = hmac.new(app_secret.encode(), f"{timestamp_ms}\n{app_secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class DingTalkCallbacks:
    app_secret: str
    robot_code: str
    api_base: str

    name = "dingtalk"
    route = "/dingtalk/callback"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DingTalkCallbacks:
        return cls(environ["DINGTALK_APP_SECRET"], environ.get("DINGTALK_ROBOT_CODE", "dingloadtest"),
                   (environ.get("DINGTALK_API_BASE") or _DEFAULT_API_BASE).rstrip("/"))

    def message(self, text: str, user: str, chat: str) -> SignedRequest:
        created = now_ms()
        body = {
            "msgtype": "text", "text": {"content": " " + text}, "msgId": unique_id("msg"),
            "createAt": created, "conversationType": "1", "conversationId": f"cid{chat}",
            "senderId": f"$:LWCP_v1:${user}", "senderStaffId": user, "senderNick": user,
            "senderCorpId": "dingloadtest", "isAdmin": False, "chatbotUserId": "$:LWCP_v1:$bot",
            "robotCode": self.robot_code, "isInAtList": True,
            "sessionWebhook": f"{self.api_base}/robot/sendBySession?session={unique_id()}",
            "sessionWebhookExpiredTime": created + 90 * 60 * 1000,
        }
        timestamp = str(now_ms())
        return SignedRequest(self.route, json.dumps(body, ensure_ascii=False).encode(), {
            "Content-Type": "application/json", "timestamp": timestamp, "sign": sign(timestamp, self.app_secret),
        })
