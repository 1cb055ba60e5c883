"""DingTalk calls: session webhooks, the robot and card OpenAPIs with their access token, and custom robot webhooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from bot.platforms.base import DeliveryFailed
from bot.platforms.dingtalk.crypto import robot_url_sign
from bot.platforms.http import request_json
from bot.platforms.tokens import TokenCache

# Tokens live 7200 s; fetch a new one five minutes before, so no send races the expiry.
TOKEN_REFRESH_MARGIN = 300.0
SESSION_GONE = 300001
# 130101: a robot sent more than 20 messages a minute; DingTalk throttles it for a while.
RATE_LIMITED = frozenset({130101})
# The interactive card OpenAPI (card_1.0): create a card and deliver it in one call, stream into it.
CREATE_AND_DELIVER_PATH = "/v1.0/card/instances/createAndDeliver"
STREAMING_PATH = "/v1.0/card/streaming"


def webhook_failure(what: str, status: int, data: dict[str, Any]) -> DeliveryFailed:
    """An `errcode` answer as a DeliveryFailed: throttling is retried, other refusals are not."""
    code = data.get("errcode")
    message = str(data.get("errmsg", ""))[:200]
    return DeliveryFailed(f"dingtalk {what} failed: HTTP {status}, errcode {code}: {message}",
                          retryable=code in RATE_LIMITED)


async def post_webhook(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    """POST to a robot webhook (session or custom); the `errcode` DingTalk answered (0 = sent)."""
    status, data = await request_json(http, "POST", url, json=body)
    code = data.get("errcode")
    if status != 200 or not isinstance(code, int):
        raise webhook_failure("webhook", status, data)
    return code


async def post_robot_markdown(
    http: aiohttp.ClientSession, url: str, title: str, text: str, *, secret: str | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Post a markdown message to a custom robot webhook (`.../robot/send?access_token=...`).

    With the robot's `SEC...` secret the URL gets `timestamp` and `sign`. Raises DeliveryFailed
    like a reply does; the URL carries the robot's credential, so it is never part of an error.
    """
    if secret:
        timestamp = int(clock() * 1000)
        separator = "&" if "?" in url else "?"
        url = f"{url}{separator}timestamp={timestamp}&sign={robot_url_sign(secret, timestamp)}"
    body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    status, data = await request_json(http, "POST", url, json=body)
    if status != 200 or data.get("errcode") != 0:
        raise webhook_failure("custom robot webhook", status, data)


class DingTalkAPI:
    """The robot OpenAPI of one app (api.dingtalk.com), with its access token cached."""

    def __init__(
        self, http: aiohttp.ClientSession, api_base: str, app_key: str, app_secret: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.api_base = api_base
        self._credentials = {"appKey": app_key, "appSecret": app_secret}
        self.tokens = TokenCache(self._fetch_token, TOKEN_REFRESH_MARGIN, clock)

    async def _fetch_token(self) -> tuple[str, float]:
        status, data = await request_json(
            self.http, "POST", f"{self.api_base}/v1.0/oauth2/accessToken", json=self._credentials
        )
        token, lifetime = data.get("accessToken"), data.get("expireIn")
        if status != 200 or not isinstance(token, str) or not isinstance(lifetime, int | float):
            raise _openapi_failure("accessToken", status, data)
        return token, float(lifetime)

    async def send_to_user(self, robot_code: str, staff_id: str, text: str) -> None:
        """A one-to-one message (`robot/oToMessages/batchSend`)."""
        data = await self._call("/v1.0/robot/oToMessages/batchSend", {
            "robotCode": robot_code, "userIds": [staff_id], **_sample_text(text),
        })
        if data.get("flowControlledStaffIdList"):
            raise DeliveryFailed("dingtalk throttled the one-to-one message", retryable=True)
        if data.get("invalidStaffIdList"):
            raise DeliveryFailed("dingtalk does not know the recipient's staff id", retryable=False)

    async def send_to_group(self, robot_code: str, open_conversation_id: str, text: str) -> None:
        """A group message (`robot/groupMessages/send`)."""
        await self._call("/v1.0/robot/groupMessages/send", {
            "robotCode": robot_code, "openConversationId": open_conversation_id, **_sample_text(text),
        })

    async def create_and_deliver_card(self, body: dict[str, Any]) -> None:
        """Create a card and deliver it to its open space (`card/instances/createAndDeliver`)."""
        data = await self._call(CREATE_AND_DELIVER_PATH, body)
        _card_outcome("createAndDeliver", data)
        result = data.get("result")
        delivered = result.get("deliverResults") if isinstance(result, dict) else None
        for outcome in delivered if isinstance(delivered, list) else ():
            if isinstance(outcome, dict) and outcome.get("success") is False:
                # Created but not shown (the robot left the group, the user is out of its range): no retry helps.
                raise DeliveryFailed(f"dingtalk did not deliver the card to {outcome.get('spaceType')}: "
                                     f"{str(outcome.get('errorMsg', ''))[:200]}", retryable=False)

    async def stream_card(self, body: dict[str, Any]) -> None:
        """Write one variable of a card (`PUT card/streaming`)."""
        _card_outcome("card streaming", await self._call(STREAMING_PATH, body, method="PUT"))

    async def _call(self, path: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
        token = await self.tokens.get()
        status, data = await request_json(
            self.http, method, self.api_base + path, json=body, headers={"x-acs-dingtalk-access-token": token}
        )
        if status == 200:
            return data
        if status == 401 or data.get("code") == "InvalidAuthentication":
            self.tokens.invalidate()
            raise DeliveryFailed("dingtalk rejected the access token", retryable=True)
        raise _openapi_failure(path.rsplit("/", 1)[-1], status, data)


def _sample_text(text: str) -> dict[str, str]:
    return {"msgKey": "sampleText", "msgParam": orjson.dumps({"content": text}).decode()}


def _card_outcome(what: str, data: dict[str, Any]) -> None:
    # The card OpenAPI answers 200 with {"success": ..., "result": ...}; only an explicit false is a refusal.
    if data.get("success") is False:
        raise DeliveryFailed(f"dingtalk {what} answered success=false", retryable=False)


def _openapi_failure(what: str, status: int, data: dict[str, Any]) -> DeliveryFailed:
    # The OpenAPI answers errors with an HTTP 4xx and {"code": "...", "message": "..."}.
    code = str(data.get("code", ""))
    message = str(data.get("message", ""))[:200]
    throttled = "Throttling" in code or "QpsLimit" in code
    return DeliveryFailed(f"dingtalk {what} failed: HTTP {status}, {code}: {message}", retryable=throttled)
