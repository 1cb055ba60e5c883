"""`GET /openapi.json`: the OpenAPI 3.1 description of the bot's own HTTP API, built from its settings."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot import __version__
from bot.http.responses import json_response
from bot.keys import settings_key
from bot.settings import Settings
from servicekit.ids import SAFE_ID_PATTERN

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {_JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _event(name: str, data: str) -> dict[str, Any]:
    """One server-sent event: its name and its data, a JSON document of the named schema."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": _JSON, "contentSchema": _ref(data)},
        },
    }


def _chat_reply() -> dict[str, Any]:
    reply = _json(_ref("ChatResponse"), "The model's reply (JSON), or its stream of events when `stream` is true.")
    # Before OpenAPI 3.2's itemSchema, the schema of an event stream describes each event.
    reply["content"]["text/event-stream"] = {
        "schema": {"oneOf": [_event("delta", "StreamDelta"), _event("done", "ChatResponse"), _event("error", "Error")]},
    }
    return reply


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "string"}}}


def build_document(settings: Settings) -> dict[str, Any]:
    """The document for this configuration: limits and whether a key is needed come from the settings."""
    # null counts as not given, as in the handler.
    identifier = {"type": ["string", "null"], "pattern": SAFE_ID_PATTERN}
    chat_errors = {
        "400": _error("The body is not a JSON object, or a field is missing, empty, too long or malformed."),
        "408": _error("The body did not arrive within the read timeout."),
        "413": _error(f"The body is over {settings.bot_max_body_bytes} bytes."),
        "415": _error("The body is not sent as application/json."),
        "502": _error("The model answered with something unusable."),
        "503": _json(_ref("Error"), "The model or a store the bot depends on is unavailable.", _RETRY_AFTER),
        "504": _error("The model did not answer in time."),
    }
    chat_operation: dict[str, Any] = {
        "operationId": "chat",
        "summary": "Answer one message, keeping the conversation of its session.",
        "description": (
            "With `\"stream\": true` the reply comes as server-sent events while the model writes it: a `delta` "
            "event per piece of text (`StreamDelta`), then one `done` event with the whole reply (`ChatResponse`). "
            "A failure before the first piece is the usual JSON error with its status; after it, the stream ends "
            "with an `error` event (`Error`) carrying the same code. Only a completed reply is kept in the session."
        ),
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref("ChatRequest")}}},
        "responses": {"200": _chat_reply(), **chat_errors},
    }
    if settings.api_keys:
        chat_operation["security"] = [{"bearer": []}, {"apiKey": []}]
        chat_operation["responses"]["401"] = _error(
            "No key (bearer token or X-API-Key), or not one of the configured keys."
        )
    health_summary = {
        "summary": "Status, uptime and version, as the deployment guides show them.",
        "responses": {"200": _json(_ref("HealthSummary"), "The bot is running.")},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "botwatch bot",
            "version": __version__,
            "description": "The chat API and health endpoints. Platform callbacks are described by each platform.",
        },
        "paths": {
            "/health": {"get": {
                "operationId": "liveness",
                "summary": "Liveness: answers while the process serves requests, touching no dependency.",
                "responses": {"200": {"description": "Alive.", "content": {"text/plain": {"schema": {"const": "OK"}}}}},
            }},
            "/api/health": {
                "get": {"operationId": "health", **health_summary},
                "post": {"operationId": "health_post", **health_summary},
            },
            "/ready": {"get": {
                "operationId": "readiness",
                "summary": "Readiness: every configured dependency answers.",
                "responses": {
                    "200": _json(_ref("Ready"), "Ready to take traffic."),
                    "503": _json(_ref("NotReady"), "A dependency does not answer.", _RETRY_AFTER),
                },
            }},
            "/api/v1/chat": {"post": chat_operation},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            }},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "ChatRequest": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "message": {
                            "type": "string", "minLength": 1, "maxLength": settings.bot_max_message_chars,
                            "pattern": r"\S", "description": "Must hold more than whitespace.",
                        },
                        "user_id": identifier,
                        "session_id": {**identifier, "description": "Continue this conversation (scoped to the API key). Without it: the user_id's conversation, else a new unguessable id."},
                        "stream": {"type": ["boolean", "null"], "default": False,
                                   "description": "Answer as text/event-stream while the model writes."},
                    },
                },
                "StreamDelta": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {"text": {"type": "string", "minLength": 1, "description": "The next piece of the reply."}},
                },
                "ChatResponse": {
                    "type": "object",
                    "required": ["reply", "session_id", "request_id"],
                    "properties": {
                        "reply": {"type": "string"},
                        "session_id": {"type": "string"},
                        "request_id": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string", "description": "Stable, machine-readable."},
                            "message": {"type": "string"},
                            "request_id": {"type": "string"},
                        },
                    }},
                },
                "HealthSummary": {
                    "type": "object",
                    "required": ["status", "uptime", "version", "platforms"],
                    "properties": {
                        "status": {"const": "healthy"},
                        "uptime": {"type": "integer", "minimum": 0, "description": "Seconds since start."},
                        "version": {"type": "string"},
                        "platforms": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Ready": {
                    "type": "object",
                    "required": ["status", "checks"],
                    "properties": {"status": {"const": "ready"}, "checks": {"type": "array", "items": {"type": "string"}}},
                },
                "NotReady": {
                    "type": "object",
                    "required": ["status", "failing"],
                    "properties": {
                        "status": {"const": "unavailable"},
                        "failing": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            },
        },
    }


async def openapi_document(request: web.Request) -> web.Response:
    return json_response(build_document(request.app[settings_key]))
