"""DingTalk fixtures: callbacks signed by dingtalkchatbot and read by dingtalk-stream, a fake DingTalk, the bot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from aiohttp import web
from dingtalk_stream import ChatbotMessage
from dingtalkchatbot.chatbot import DingtalkChatbot

from bot.keys import adapters_key
from tests.bot.platforms.dingtalk.cards import DingTalkCards
from tests.bot.platforms.harness import (
    PlatformLoop,
    StartPlatform,
    start_platform,  # noqa: F401  (fixture)
)
from tests.support.fake_platform import FakePlatformAPI, Recorded

DATA = Path(__file__).parents[1] / "data" / "dingtalk"
APP_KEY = "dingxtszvqlgcb7f5ylh"
# dingtalkchatbot signs only secrets that start with SEC; the formula is the same for app secrets.
APP_SECRET = "SEC7a1f0c9e2b4d6f8a0c2e4f6b8d0a2c4e6f8b0d2f4a6c8e0b2d4f6a8c0e2f4b6d"
ACCESS_TOKEN = "fd6e8f3b1c7a4e2d9b0c5a8f7e6d3c21"
SESSION_PATH = "/robot/sendBySession"
TOKEN_PATH = "/v1.0/oauth2/accessToken"
USER_PATH = "/v1.0/robot/oToMessages/batchSend"
GROUP_PATH = "/v1.0/robot/groupMessages/send"
SECRETS = (APP_SECRET, ACCESS_TOKEN)
CARD_TEMPLATE = "8aebdfb9-28f4-4a98-98f5-396c3dde41a0.schema"


def signed_headers(timestamp_ms: int | None = None, secret: str = APP_SECRET) -> dict[str, str]:
    """The `timestamp` and `sign` headers, the signature taken from dingtalkchatbot's signed robot URL."""
    robot = DingtalkChatbot("https://oapi.dingtalk.com/robot/send?access_token=unused", secret=secret)
    robot.start_time = (time.time() * 1000 if timestamp_ms is None else timestamp_ms) / 1000
    robot.update_webhook()
    query = parse_qs(urlsplit(robot.webhook).query)  # unquote_plus, as the header carries it
    return {"timestamp": query["timestamp"][0], "sign": query["sign"][0], "Content-Type": "application/json"}


def payload(name: str, **fields: Any) -> dict[str, Any]:
    """A recorded callback body with `fields` replaced; dingtalk-stream must be able to read it."""
    body: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text()) | fields
    message = ChatbotMessage.from_dict(body)
    assert message.message_id == body["msgId"] and message.conversation_id == body["conversationId"]
    return body


def live_session(base: str, session: str = "s-1", expires_in_ms: int = 5_400_000) -> dict[str, Any]:
    """The session-webhook fields of a fresh callback, pointing at the fake DingTalk."""
    return {"sessionWebhook": f"{base}{SESSION_PATH}?session={session}",
            "sessionWebhookExpiredTime": int(time.time() * 1000) + expires_in_ms}


def callback(body: dict[str, Any], **sign_args: Any) -> tuple[bytes, dict[str, str]]:
    return orjson.dumps(body), signed_headers(**sign_args)


class DingTalkAPI(FakePlatformAPI):
    """Session webhooks, the robot OpenAPI and the card OpenAPI (`cards`); scripted answers are served first."""

    def __init__(self) -> None:
        super().__init__()
        self.session_codes: list[int] = []
        self.openapi_statuses: list[int] = []
        self.flow_controlled: list[bool] = []
        self.on("POST", SESSION_PATH, self._session)
        self.on("POST", TOKEN_PATH, lambda _req: web.json_response({"accessToken": ACCESS_TOKEN, "expireIn": 7200}))
        self.on("POST", USER_PATH, self._openapi(self._to_user))
        self.on("POST", GROUP_PATH, self._openapi(lambda _req: {"processQueryKey": "q-group"}))
        self.cards = DingTalkCards(ACCESS_TOKEN)
        self.cards.serve(self)

    def _session(self, _request: Recorded) -> web.Response:
        code = self.session_codes.pop(0) if self.session_codes else 0
        return web.json_response({"errcode": code, "errmsg": "ok" if code == 0 else "scripted failure"})

    def _to_user(self, request: Recorded) -> dict[str, Any]:
        throttled = self.flow_controlled.pop(0) if self.flow_controlled else False
        return {"processQueryKey": "q-user", "invalidStaffIdList": [],
                "flowControlledStaffIdList": request.json()["userIds"] if throttled else []}

    def _openapi(self, answer: Callable[[Recorded], dict[str, Any]]) -> Callable[[Recorded], web.Response]:
        def respond(request: Recorded) -> web.Response:
            status = self.openapi_statuses.pop(0) if self.openapi_statuses else 200
            if status == 401:
                return web.json_response({"code": "InvalidAuthentication", "message": "token invalid"}, status=401)
            return web.json_response(answer(request))

        return respond


def env(base: str) -> dict[str, str]:
    """The DINGTALK_* settings with the API at `base`, whose host may also serve session webhooks."""
    return {"DINGTALK_APP_KEY": APP_KEY, "DINGTALK_APP_SECRET": APP_SECRET, "DINGTALK_API_BASE": base,
            "DINGTALK_SESSION_WEBHOOK_HOSTS": "127.0.0.1"}


def streaming_env(base: str) -> dict[str, str]:
    """`env` with replies streamed into an AI card."""
    return env(base) | {"DINGTALK_STREAM_REPLIES": "true", "DINGTALK_CARD_TEMPLATE_ID": CARD_TEMPLATE}


def api_base(loop: PlatformLoop) -> str:
    """Where the fake DingTalk listens (session webhooks in callbacks point there)."""
    return str(loop.client.app[adapters_key]["dingtalk"].settings.api_base)


@pytest.fixture
def api() -> DingTalkAPI:
    return DingTalkAPI()


@pytest.fixture
async def dingtalk(start_platform: StartPlatform, api: DingTalkAPI) -> PlatformLoop:
    return await start_platform("dingtalk", env, api)
