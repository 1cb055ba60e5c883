"""QQ bot webhook dispatches (op 0), signed with Ed25519 over timestamp + body like the QQ platform."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from loadtest.platforms.base import SignedRequest, now_s, unique_id

SETTINGS = ("QQ_APP_ID", "QQ_APP_SECRET")


def signing_key(app_secret: str) -> Ed25519PrivateKey:
    """The seed is the secret repeated to at least 32 characters, cut to 32 bytes."""
    seed = app_secret
    while len(seed) < 32:
        seed += app_secret
    return Ed25519PrivateKey.from_private_bytes(seed[:32].encode())


@dataclass(frozen=True)
class QQCallbacks:
    app_id: str
    key: Ed25519PrivateKey

    name = "qq"
    route = "/qq/callback"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> QQCallbacks:
        return cls(environ["QQ_APP_ID"], signing_key(environ["QQ_APP_SECRET"]))

    def message(self, text: str, user: str, chat: str) -> SignedRequest:
        event = {
            "id": f"GROUP_AT_MESSAGE_CREATE:{unique_id()}", "op": 0, "s": 1, "t": "GROUP_AT_MESSAGE_CREATE",
            "d": {
                "id": unique_id("ROBOT1.0_"), "group_openid": chat, "content": " " + text,
                "author": {"member_openid": user},
                "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "attachments": [],
            },
        }
        body = json.dumps(event, ensure_ascii=False).encode()
        timestamp = str(now_s())
        return SignedRequest(self.route, body, {
            "Content-Type": "application/json", "User-Agent": "QQBot-Callback", "X-Bot-Appid": self.app_id,
            "X-Signature-Method": "Ed25519", "X-Signature-Timestamp": timestamp,
            "X-Signature-Ed25519": self.key.sign(timestamp.encode() + body).hex(),
        })
