"""A local stand-in for the Telegram Bot API's sendMessage: chat 666 is refused, every other chat accepted."""

from __future__ import annotations

import sys

from aiohttp import web

REFUSED_CHAT = 666


async def send_message(request: web.Request) -> web.Response:
    body = await request.json()
    if body.get("chat_id") == REFUSED_CHAT:
        return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                                 status=400)
    return web.json_response({"ok": True, "result": {"message_id": 1, "chat": {"id": body.get("chat_id")}}})


def main() -> None:
    """`python -m tests.support.telegram_api PORT`."""
    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", send_message)
    app.router.add_get("/health", lambda _: web.Response(text="OK"))  # type: ignore[arg-type,return-value]
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
