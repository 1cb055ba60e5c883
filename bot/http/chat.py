"""`POST /api/v1/chat`: the chat API (one JSON answer, or a stream of events on request)."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import orjson
from aiohttp import web

from bot.errors import MessageTooLong, PayloadInvalid, PayloadTooLarge, UnsupportedMediaType
from bot.http.auth import require_bearer
from bot.http.chat_stream import stream_chat
from bot.http.responses import json_response
from bot.keys import conversation_key, request_id_key, settings_key
from servicekit.ids import is_safe_id


def caller_scope(request: web.Request, keys: tuple[str, ...]) -> str:
    """The caller's scope: conversations are kept apart per API key ("open" when keys are off)."""
    if not keys:
        return "open"
    matched = require_bearer(request, keys, x_api_key=True)
    # A digest, so the key itself is never part of a stored name.
    return "k" + hashlib.sha256(matched).hexdigest()[:24]


def conversation_of(scope: str, user_id: str | None, session_id: str | None) -> tuple[str, str]:
    """(store key, session_id to hand back) for a chat request.

    Session ids and user ids are separate namespaces, both inside the caller's scope: a
    `session_id` equal to someone's `user_id` starts its own conversation. A user's
    conversation is handed back under an id derived from the user id (never the id itself);
    with neither, the server mints an unguessable id.
    """
    if session_id is None:
        if user_id is None:
            session_id = secrets.token_urlsafe(24)
        else:
            session_id = "u-" + hashlib.sha256(f"{scope}\0{user_id}".encode()).hexdigest()[:32]
    return f"api:{scope}:{session_id}", session_id


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


async def chat(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    settings = request.app[settings_key]
    scope = caller_scope(request, settings.api_keys)
    body = await read_json_object(request, settings.bot_max_body_bytes)
    message = body.get("message")
    if not isinstance(message, str):
        raise PayloadInvalid("message is required and must be a string")
    if not message.strip():
        raise PayloadInvalid("message must not be empty")
    if len(message) > settings.bot_max_message_chars:
        raise MessageTooLong(f"message is over {settings.bot_max_message_chars} characters")
    stream = body.get("stream")
    if stream is None:
        stream = False  # null counts as not given, as for the ids
    if not isinstance(stream, bool):
        raise PayloadInvalid("stream must be true or false")
    key, session_id = conversation_of(scope, optional_id(body, "user_id"), optional_id(body, "session_id"))
    if stream:
        return await stream_chat(request, key, session_id, message, started)
    completion = await request.app[conversation_key].respond(key, message)
    return json_response(
        {"reply": completion.text, "session_id": session_id, "request_id": request[request_id_key]}
    )
