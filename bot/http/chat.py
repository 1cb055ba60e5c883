"""`POST /api/v1/chat`: the synchronous chat API."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from bot.errors import MessageTooLong, PayloadInvalid, PayloadTooLarge, UnsupportedMediaType
from bot.http.auth import require_bearer
from bot.http.responses import json_response
from bot.keys import conversation_key, request_id_key, settings_key
from servicekit.ids import is_safe_id


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object, or a precise 4xx."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("content type must be application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body over {max_bytes} bytes")
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise PayloadInvalid("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise PayloadInvalid("body must be a JSON object")
    return body


def optional_id(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadInvalid(f"{name} must be a string")
    if not is_safe_id(value):
        raise PayloadInvalid(f"{name} must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return value


async def chat(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    if settings.api_keys:
        require_bearer(request, settings.api_keys)
    body = await read_json_object(request, settings.bot_max_body_bytes)
    message = body.get("message")
    if not isinstance(message, str):
        raise PayloadInvalid("message is required and must be a string")
    if not message.strip():
        raise PayloadInvalid("message must not be empty")
    if len(message) > settings.bot_max_message_chars:
        raise MessageTooLong(f"message is over {settings.bot_max_message_chars} characters")
    user_id = optional_id(body, "user_id")
    session_id = optional_id(body, "session_id") or user_id or uuid.uuid4().hex
    completion = await request.app[conversation_key].respond(f"api:{session_id}", message)
    return json_response(
        {"reply": completion.text, "session_id": session_id, "request_id": request[request_id_key]}
    )
