"""Limits against slow and greedy clients: a connection cap, a body read deadline, JSON for unparsable requests."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from yarl import URL

from bot.http.responses import error_response
from bot.settings import Settings

log = logging.getLogger("bot.http")


class _BodyTimedOut(asyncio.TimeoutError):
    """Set on a request's body stream when the body did not arrive in time.

    A TimeoutError because aiohttp, when it drains an unread body after the response, treats
    exactly that type as "give up on this connection quietly".
    """


def body_deadline_middleware(timeout: float) -> Middleware:
    """The whole body must arrive within `timeout` seconds of the headers, or the answer is a JSON 408."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = request.content
        if not request.body_exists or body.is_eof():
            return await handler(request)

        def expire() -> None:
            if not body.is_eof():
                body.set_exception(_BodyTimedOut())

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await handler(request)
        except _BodyTimedOut:
            raise web.HTTPRequestTimeout() from None
        finally:
            timer.cancel()

    return middleware


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering requests it cannot parse with the bot's JSON error."""

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        if isinstance(exc, LineTooLong):
            status, code, text = 431, "headers_too_large", "request line or a header is over the size limit"
        else:
            code, text = "bad_request", "malformed HTTP request"
        # The parser's own message quotes the client's bytes: neither logged nor echoed.
        log.info("unparsable request refused: %s", code, extra={"error.code": code, "client.ip": request.remote})
        response = error_response(code, text, status)
        response.force_close()
        return response


_REFUSAL_BODY = orjson.dumps(
    {"error": {"code": "too_many_connections", "message": "connection limit reached; retry shortly"}}
)
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


class _Refusal(asyncio.Protocol):
    """Answers 503 without reading the request, then closes."""

    def __init__(self, linger: float = 2.0) -> None:
        self.linger = linger
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they behave as one.
        transport = cast(asyncio.Transport, transport)
        transport.write(_REFUSAL)
        # Half-close and swallow what the client still sends: closing with unread bytes would
        # make the kernel reset the connection before the client reads the 503.
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(self.linger, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class LimitedSite(web.BaseSite):
    """A TCP site holding at most BOT_MAX_CONNECTIONS connections; the ones over the cap get a 503.

    aiohttp has no connection cap of its own. Its keep-alive timer (BOT_KEEPALIVE_TIMEOUT) runs from
    the connection's start and from each response: a connection that has not delivered a complete
    request by then (idle, or trickling its headers) is closed.
    """

    def __init__(self, runner: web.BaseRunner, settings: Settings) -> None:
        super().__init__(runner, backlog=settings.bot_backlog)
        self._host = settings.bot_host
        self._port = settings.bot_port
        self._max_connections = settings.bot_max_connections
        self._handler_args: dict[str, Any] = {
            "access_log": None,  # the telemetry middleware writes the access log
            "keepalive_timeout": settings.bot_keepalive_timeout,
            "max_line_size": settings.bot_max_line_size,
            "max_field_size": settings.bot_max_field_size,
            "max_headers": settings.bot_max_headers,
        }
        self._at_cap = False

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host, port=self._port))

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def protocol() -> asyncio.Protocol:
            at_cap = len(server.connections) >= self._max_connections
            if at_cap != self._at_cap:
                # Logged on change only: a flood must not become a flood of log lines.
                self._at_cap = at_cap
                log.warning("connection cap %s: %d open", "reached" if at_cap else "cleared", len(server.connections))
            if at_cap:
                return _Refusal()
            return JsonErrorRequestHandler(server, loop=loop, **self._handler_args)

        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
