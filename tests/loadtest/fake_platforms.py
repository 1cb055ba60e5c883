"""One local stand-in for every platform's API under load: each call succeeds in the platform's own terms.

Run as `python -m tests.loadtest.fake_platforms PORT`. The bot's replies to load-test callbacks land
here instead of on the real hosts; the answer carries every platform's success fields at once
(Feishu `code`, WeCom and DingTalk `errcode`, Slack and Telegram `ok`, the token fields of each).
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from aiohttp import web

from loadtest.replies import references

SUCCESS = {
    "code": 0, "msg": "ok", "errcode": 0, "errmsg": "ok", "ok": True, "invaliduser": "",
    "tenant_access_token": "t-loadtest", "expire": 7200,  # Feishu
    "access_token": "loadtest-token", "expires_in": 7200,  # WeCom, QQ
    "accessToken": "loadtest-token", "expireIn": 7200,  # DingTalk OpenAPI
    "result": {"message_id": 1}, "data": {"message_id": "om_loadtest"}, "id": "loadtest",
}


def create_app() -> web.Application:
    calls: Counter[str] = Counter()
    # When the reply quoting each load-test reference arrived (loadtest/replies.py reads it).
    arrivals: dict[str, float] = {}

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        for ref in references(body):
            arrivals.setdefault(ref, now)
        calls[request.path.split("/")[1] if "/" in request.path else request.path] += 1
        return web.json_response(SUCCESS)

    async def counts(request: web.Request) -> web.Response:
        return web.json_response(dict(calls))

    async def replies(request: web.Request) -> web.Response:
        return web.json_response(arrivals)

    app = web.Application()
    app.router.add_get("/_calls", counts)
    app.router.add_get("/_replies", replies)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
