"""A minimal platform registered from the tests: proof that a new platform touches no core file."""

from __future__ import annotations

import hmac
from typing import Any

import orjson

from bot.errors import WebhookRejected
from bot.messages import InboundMessage, Reply
from bot.platforms.base import (
    Decoded,
    DeliveryFailed,
    PlatformDeps,
    PlatformPlugin,
    PlatformSettings,
    Route,
    WebhookRequest,
    WebhookResponse,
)
from bot.platforms.http import request_json


class ExampleSettings(PlatformSettings):
    token: str
    api_base: str = "https://example.invalid"


class ExampleAdapter:
    name = "example"
    routes = (Route("POST", "/example/hook"),)

    def __init__(self, settings: ExampleSettings, deps: PlatformDeps) -> None:
        self.settings = settings
        self.deps = deps

    def verify(self, request: WebhookRequest) -> None:
        presented = request.headers.get("X-Example-Token", "")
        if not hmac.compare_digest(presented.encode(), self.settings.token.encode()):
            raise WebhookRejected("bad_token", status=401)

    def decode(self, request: WebhookRequest) -> Decoded:
        try:
            body = orjson.loads(request.body)
            if body.get("type") == "challenge":
                return Decoded("challenge", response=WebhookResponse(body=orjson.dumps({"echo": body["echo"]})))
            message = InboundMessage(
                platform=self.name, message_id=str(body["id"]), chat_id=str(body["chat"]),
                user_id=str(body["user"]), text=str(body["text"]), received_at=request.received_at,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise WebhookRejected("malformed") from None
        return Decoded("message", messages=[message])

    def ack(self, request: WebhookRequest, decoded: Decoded) -> WebhookResponse:
        return WebhookResponse(body=b'{"ok":true}')

    def format(self, reply: Reply) -> dict[str, Any]:
        return {"chat": reply.inbound.chat_id, "text": reply.text, "idempotency_key": reply.inbound.message_id}

    async def send(self, reply: Reply) -> None:
        status, data = await request_json(
            self.deps.http, "POST", f"{self.settings.api_base}/send", json=self.format(reply),
            headers={"Authorization": f"Token {self.settings.token}"},
        )
        if status != 200 or data.get("ok") is not True:
            raise DeliveryFailed(f"example API refused: HTTP {status}", retryable=False)


plugin = PlatformPlugin(
    name="example",
    env_prefix="EXAMPLE_",
    settings_type=ExampleSettings,
    required=("token",),
    routes=ExampleAdapter.routes,
    create=ExampleAdapter,
)
