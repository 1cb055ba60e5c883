"""Telegram fixtures: the bot with TELEGRAM_* set, a fake Bot API, and recorded updates checked by python-telegram-bot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from telegram import Update

from tests.bot.platforms.harness import PlatformLoop, Script, StartPlatform, api, make_adapter, start_platform  # noqa: F401  (fixtures)
from tests.support.fake_platform import FakePlatformAPI

DATA = Path(__file__).parent.parent / "data" / "telegram"
BOT_TOKEN = "123456789:AAbot-token-must-not-leak_0123456789"
SECRET_TOKEN = "webhook-secret_must-not-leak"
SECRETS = (BOT_TOKEN, SECRET_TOKEN)
SEND_MESSAGE = f"/bot{BOT_TOKEN}/sendMessage"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET_TOKEN, "Content-Type": "application/json"}


def recorded(name: str, **changes: Any) -> dict[str, Any]:
    """A recorded update, `update_id` and message fields replaced, checked to be one python-telegram-bot parses."""
    update = json.loads((DATA / name).read_text())
    if "update_id" in changes:
        update["update_id"] = changes.pop("update_id")
    next(v for k, v in update.items() if k != "update_id").update(changes)
    assert Update.de_json(update, bot=None).update_id == update["update_id"]
    return update


def env(base: str) -> dict[str, str]:
    """The TELEGRAM_* settings with the API at `base`."""
    return {"TELEGRAM_BOT_TOKEN": BOT_TOKEN, "TELEGRAM_SECRET_TOKEN": SECRET_TOKEN, "TELEGRAM_API_BASE": base}


@pytest.fixture
def send_message(api: FakePlatformAPI) -> Script:
    return Script(api, "POST", SEND_MESSAGE, {"ok": True, "result": {"message_id": 1400}})


@pytest.fixture
async def telegram(start_platform: StartPlatform, api: FakePlatformAPI, send_message: Script) -> PlatformLoop:
    return await start_platform("telegram", env, api)
