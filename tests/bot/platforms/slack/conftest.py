"""Slack fixtures: the bot with SLACK_* set, a fake Web API, and requests signed by slack-sdk."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier

from tests.bot.platforms.harness import PlatformLoop, Script, StartPlatform, api, make_adapter, start_platform  # noqa: F401  (fixtures)
from tests.support.fake_platform import FakePlatformAPI

DATA = Path(__file__).parent.parent / "data" / "slack"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-bot-token-must-not-leak"
SECRETS = (SIGNING_SECRET, BOT_TOKEN)
POST_MESSAGE = "/api/chat.postMessage"


def recorded(name: str, **event: Any) -> bytes:
    """A recorded callback body; keyword arguments replace fields of its `event` (or top level for event_id)."""
    payload = json.loads((DATA / name).read_text())
    if "event_id" in event:
        payload["event_id"] = event.pop("event_id")
    payload.get("event", {}).update(event)
    return json.dumps(payload).encode()


def signed(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with `body`, signed by slack-sdk."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=stamp, body=body)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature, "Content-Type": "application/json"}


def env(base: str) -> dict[str, str]:
    """The SLACK_* settings with the API at `base`."""
    return {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_BASE": base}


@pytest.fixture
def post_message(api: FakePlatformAPI) -> Script:
    return Script(api, "POST", POST_MESSAGE, {"ok": True, "channel": "D024BE91L", "ts": "1355517524.000007"})


@pytest.fixture
async def slack(start_platform: StartPlatform, api: FakePlatformAPI, post_message: Script) -> PlatformLoop:
    return await start_platform("slack", env, api)
