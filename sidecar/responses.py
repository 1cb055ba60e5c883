"""Responses the sidecar answers itself: the same `{"error": {...}}` JSON the bot uses."""

from __future__ import annotations

from email.utils import formatdate
from http import HTTPStatus

import orjson

Headers = list[tuple[bytes, bytes]]


class LocalError:
    """A refusal decided by the sidecar: status, stable code, message and extra headers."""

    __slots__ = ("status", "code", "message", "headers")

    def __init__(self, status: int, code: str, message: str, headers: Headers | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


def render(error: LocalError, request_id: str, *, keep_alive: bool, http10: bool = False) -> bytes:
    """The full HTTP/1.1 response for a local error, ready to write to the client."""
    body = orjson.dumps({"error": {"code": error.code, "message": error.message, "request_id": request_id}})
    head = [
        b"HTTP/1.1 %d %s\r\n" % (error.status, HTTPStatus(error.status).phrase.encode()),
        b"Content-Type: application/json\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Date: %s\r\n" % formatdate(usegmt=True).encode(),
        b"X-Request-ID: %s\r\n" % request_id.encode(),
    ]
    head.extend(b"%s: %s\r\n" % pair for pair in error.headers)
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    elif http10:
        head.append(b"Connection: keep-alive\r\n")
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


def bad_request(message: str) -> LocalError:
    return LocalError(400, "bad_request", message)


def not_found() -> LocalError:
    return LocalError(404, "not_found", "not found")


def method_not_allowed() -> LocalError:
    return LocalError(405, "method_not_allowed", "CONNECT and protocol upgrades are not proxied")


def payload_too_large(limit: int) -> LocalError:
    return LocalError(413, "payload_too_large", f"body over {limit} bytes")


def headers_too_large(limit: int) -> LocalError:
    return LocalError(431, "headers_too_large", f"request head over {limit} bytes")


def rate_limited(rule: str, headers: Headers) -> LocalError:
    return LocalError(429, "rate_limited", f"rate limit {rule} exceeded", headers)


def overloaded(retry_after: int) -> LocalError:
    return LocalError(503, "overloaded", "too many requests in flight", [(b"Retry-After", b"%d" % retry_after)])


def upstream_down(retry_after: int) -> LocalError:
    return LocalError(503, "upstream_unavailable", "the service is unavailable", [(b"Retry-After", b"%d" % retry_after)])


def shutting_down() -> LocalError:
    return LocalError(503, "shutting_down", "the sidecar is shutting down", [(b"Retry-After", b"1")])


def request_timeout(part: str) -> LocalError:
    return LocalError(408, "request_timeout", f"the request {part} was not received in time")


def too_many_connections(scope: str) -> LocalError:
    return LocalError(503, "too_many_connections", f"too many open connections {scope}", [(b"Retry-After", b"1")])


def bad_gateway(message: str) -> LocalError:
    return LocalError(502, "bad_gateway", message)


def gateway_timeout(message: str) -> LocalError:
    return LocalError(504, "gateway_timeout", message)
