"""WeCom API calls: the cached access token, application messages (message/send), group-robot webhooks.

The access token and a robot's key travel in the query string, so no URL is ever put into an
error or a log line here; errors name the API and WeCom's errcode only.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.platforms.base import DeliveryFailed
from bot.platforms.http import request_json
from bot.platforms.tokens import TokenCache

# gettoken hands out the same token until it expires; asking 5 minutes early avoids
# sending with a token that lapses in flight.
REFRESH_MARGIN = 300.0
# invalid credential, invalid access_token, access_token expired
TOKEN_INVALID = frozenset({40001, 40014, 42001})
# system busy, API frequency limit, API concurrency limit
TRY_LATER = frozenset({-1, 45009, 45033})
ROBOT_MARKDOWN_MAX_BYTES = 4096
ROBOT_TEXT_MAX_BYTES = 2048


def check_errcode(status: int, data: dict[str, Any], what: str) -> None:
    """Accept HTTP 200 with errcode 0; anything else becomes DeliveryFailed, retryable when WeCom says busy."""
    code = data.get("errcode")
    if status == 200 and code == 0:
        return
    if code in TRY_LATER:
        raise DeliveryFailed(f"WeCom {what}: busy or rate limited (errcode {code})", retryable=True)
    raise DeliveryFailed(f"WeCom {what} refused: HTTP {status}, errcode {code}", retryable=False)


class WeComAPI:
    """One self-built app's API: a token fetched once and shared, and sends that refresh it when WeCom rejects it."""

    def __init__(self, http: aiohttp.ClientSession, api_base: str, corp_id: str, secret: str) -> None:
        self.http = http
        self.api_base = api_base.rstrip("/")
        self._corp_id = corp_id
        self._secret = secret
        self.tokens = TokenCache(self._fetch_token, REFRESH_MARGIN)

    async def _fetch_token(self) -> tuple[str, float]:
        status, data = await request_json(
            self.http, "GET", f"{self.api_base}/cgi-bin/gettoken",
            params={"corpid": self._corp_id, "corpsecret": self._secret},
        )
        check_errcode(status, data, "gettoken")
        token, lifetime = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise DeliveryFailed("WeCom gettoken answered without access_token/expires_in", retryable=True)
        return token, float(lifetime)

    async def send_message(self, payload: dict[str, Any]) -> None:
        """POST /cgi-bin/message/send; a rejected token is forgotten so the retry fetches a fresh one."""
        token = await self.tokens.get()
        status, data = await request_json(
            self.http, "POST", f"{self.api_base}/cgi-bin/message/send", json=payload, params={"access_token": token},
        )
        code = data.get("errcode")
        if code in TOKEN_INVALID:
            self.tokens.invalidate()
            raise DeliveryFailed(f"WeCom rejected the access token (errcode {code})", retryable=True)
        check_errcode(status, data, "message/send")
        invalid = str(data.get("invaliduser") or "").split("|")
        if payload.get("touser") in invalid:
            raise DeliveryFailed("WeCom message/send: the recipient is not a member of the app", retryable=False)


async def post_group_robot(
    http: aiohttp.ClientSession, webhook_url: str, content: str, *, markdown: bool = True
) -> None:
    """Post to a group robot (`…/cgi-bin/webhook/send?key=…`); raise DeliveryFailed like an app send.

    Content over the robot's size limit is cut at a character boundary rather than refused.
    """
    if markdown:
        body = {"msgtype": "markdown", "markdown": {"content": truncate_utf8(content, ROBOT_MARKDOWN_MAX_BYTES)}}
    else:
        body = {"msgtype": "text", "text": {"content": truncate_utf8(content, ROBOT_TEXT_MAX_BYTES)}}
    status, data = await request_json(http, "POST", webhook_url, json=body)
    check_errcode(status, data, "group robot")


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, ending with an ellipsis when cut."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    ellipsis = "…"
    cut = encoded[:max_bytes - len(ellipsis.encode())]
    return cut.decode("utf-8", "ignore") + ellipsis
