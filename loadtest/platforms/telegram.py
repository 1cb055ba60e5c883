"""Telegram webhook updates, carrying the secret token set with setWebhook."""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from loadtest.platforms.base import SignedRequest, now_s

SETTINGS = ("TELEGRAM_SECRET_TOKEN",)


def _update_ids() -> Iterator[int]:
    # update_id is an integer; a random start keeps ids of concurrent generators apart.
    return itertools.count(secrets.randbelow(2**40) + 1)


@dataclass(frozen=True)
class TelegramCallbacks:
    secret_token: str
    update_ids: Iterator[int] = field(default_factory=_update_ids)

    name = "telegram"
    route = "/telegram/webhook"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TelegramCallbacks:
        return cls(environ["TELEGRAM_SECRET_TOKEN"])

    def message(self, text: str, user: str, chat: str) -> SignedRequest:
        update_id = next(self.update_ids)
        user_id = int.from_bytes(user.encode()[:6], "big")
        update = {
            "update_id": update_id,
            "message": {
                "message_id": update_id % 2**31, "date": now_s(), "text": text,
                "chat": {"id": user_id, "type": "private"},
                "from": {"id": user_id, "is_bot": False, "first_name": user},
            },
        }
        return SignedRequest(self.route, json.dumps(update, ensure_ascii=False).encode(), {
            "Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": self.secret_token,
        })
