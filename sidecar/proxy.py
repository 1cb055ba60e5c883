"""The public listener: HTTP/1.1 client connections parsed with httptools (llhttp) on the event loop."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import deque
from time import perf_counter
from typing import cast

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser

from servicekit.addresses import IPNetwork, address_in, plain_address
from servicekit.logs import AccessLog
from sidecar import responses
from sidecar.canary import CanarySplit
from sidecar.exchange import Exchange
from sidecar.health import UpstreamHealth
from sidecar.metrics import SidecarMetrics
from sidecar.ratelimit import RateLimiter
from sidecar.responses import render
from sidecar.tracing import Tracing
from sidecar.upstream import UpstreamPool

log = logging.getLogger("sidecar.proxy")

MAX_HEAD_BYTES = 64 * 1024
# Pipelined requests parsed ahead of the one being answered; past this, stop reading the client.
MAX_PIPELINE = 16

# What the request parser does with each field: forward it unless it is named here.
_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _DROP, _FORWARDED_FOR, _FORWARDED_PROTO = range(6)
_REQUEST_ID, _TRACEPARENT, _USER_ID, _CREDENTIAL, _EXPECT, _HOST, _API_KEY = range(6, 13)
_SPECIAL = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    # Hop-by-hop (RFC 9110 7.6.1), plus proxy credentials, which are meant for this hop only.
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"upgrade": _DROP,
    b"proxy-authorization": _DROP,
    b"x-forwarded-for": _FORWARDED_FOR,
    b"x-forwarded-proto": _FORWARDED_PROTO,
    b"x-request-id": _REQUEST_ID,
    b"traceparent": _TRACEPARENT,
    b"x-user-id": _USER_ID,
    b"authorization": _CREDENTIAL,
    b"x-api-key": _API_KEY,
    b"expect": _EXPECT,
    b"host": _HOST,
}
_PAUSED_BY_UPSTREAM = 1
_PAUSED_BY_PIPELINE = 2


class Proxy:
    """What every client connection shares: limits, upstream pools and their health, counters."""

    def __init__(
        self,
        *,
        metrics: SidecarMetrics,
        pools: dict[str, UpstreamPool],
        health: dict[str, UpstreamHealth],
        tracing: Tracing,
        limiter: RateLimiter | None,
        canary: CanarySplit | None,
        access_log: AccessLog | None,
        trusted_proxies: tuple[IPNetwork, ...],
        max_body: int,
        max_buffered: int,
        max_in_flight: int,
        read_timeout: float,
        client_timeout: float,
        header_timeout: float,
        body_timeout: float,
        max_connections: int,
        max_connections_per_client: int,
        retry_after_down: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.metrics = metrics
        self.pools = pools
        self.health = health
        self.tracing = tracing
        self.limiter = limiter
        self.canary = canary
        self.access_log = access_log
        self.trusted_proxies = trusted_proxies
        self.max_body = max_body
        self.max_buffered = max_buffered
        self.buffered = 0  # request body bytes held by all exchanges still reading theirs
        self.max_in_flight = max_in_flight
        self.read_timeout = read_timeout
        self.client_timeout = client_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.retry_after_down = retry_after_down
        self.loop = loop
        self.in_flight = 0
        self.in_flight_by = dict.fromkeys(pools, 0)
        self.draining = False
        self.connections: set[ClientConnection] = set()
        # Open connections per untrusted peer address (a trusted proxy speaks for many clients).
        self.connections_by_ip: dict[str, int] = {}
        for name in pools:
            metrics.in_flight.labels(name).set_function(functools.partial(self.in_flight_by.__getitem__, name))
        metrics.client_connections.set_function(lambda: len(self.connections))
        metrics.buffered_body_bytes.set_function(lambda: self.buffered)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._tick = min(1.0, read_timeout / 4, client_timeout / 4, header_timeout / 4, body_timeout / 4)

    def choose_upstream(self, user: bytes) -> str:
        """`canary` or `stable` for a user key (see sidecar.canary)."""
        assert self.canary is not None
        return "canary" if self.canary.is_canary(user) else "stable"

    def is_trusted(self, ip: str) -> bool:
        """Whether a peer may tell us the client's address and scheme (SIDECAR_TRUSTED_PROXIES)."""
        return address_in(ip, self.trusted_proxies)

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port; returns the bound port (useful when port is 0)."""
        self._server = await self.loop.create_server(
            lambda: ClientConnection(self), host, port, backlog=2048, reuse_address=True,
        )
        self._sweeper = self.loop.call_later(self._tick, self._sweep)
        return int(self._server.sockets[0].getsockname()[1])

    def admit_connection(self, conn: ClientConnection) -> str | None:
        """Count a new connection in, or name the cap it would break (`per_client`, `max_connections`)."""
        if len(self.connections) >= self.max_connections:
            return "max_connections"
        if not conn.trusted:
            open_here = self.connections_by_ip.get(conn.peer_ip, 0)
            if open_here >= self.max_connections_per_client:
                return "per_client"
            self.connections_by_ip[conn.peer_ip] = open_here + 1
        self.connections.add(conn)
        return None

    def release_connection(self, conn: ClientConnection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        if not conn.trusted:
            left = self.connections_by_ip.get(conn.peer_ip, 1) - 1
            if left > 0:
                self.connections_by_ip[conn.peer_ip] = left
            else:
                self.connections_by_ip.pop(conn.peer_ip, None)

    def _sweep(self) -> None:
        now = self.loop.time()
        clock = perf_counter()
        for conn in list(self.connections):
            conn.check_deadlines(now, clock)
        for pool in self.pools.values():
            pool.sweep(now, self.read_timeout)
        if self.limiter is not None:
            self.limiter.expire()
        self._sweeper = self.loop.call_later(self._tick, self._sweep)

    async def close(self, timeout: float) -> None:
        """Stop accepting, let requests in flight finish (up to `timeout`), then close everything."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + timeout
        while True:
            for conn in list(self.connections):
                if conn.is_idle():
                    conn.close()
            if not self.connections or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for pool in self.pools.values():
            pool.close()
        if self.access_log is not None:
            self.access_log.flush()
        if self._server is not None:
            await self._server.wait_closed()


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, relays backpressure."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = proxy.loop
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        self.peer_ip = "unknown"
        self.peer_ip_bytes = b"unknown"
        self.trusted = False
        self.queue: deque[Exchange] = deque()
        self.parsing: Exchange | None = None
        self.last_activity = 0.0
        self.writing_paused = False
        # perf_counter() when the first byte of the request head being read arrived; None between requests.
        self.head_since: float | None = None
        self.silent = True  # nothing received yet on this connection
        self.refused = False
        self._paused = 0
        self._advancing = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer_ip = plain_address(str(peer[0]))
            self.peer_ip_bytes = self.peer_ip.encode()
        self.trusted = self.proxy.is_trusted(self.peer_ip)
        self.last_activity = self.loop.time()
        # The first request's head is due from the moment the connection is accepted (as in nginx):
        # a connection that never sends a byte is closed at the head deadline, not the idle timeout.
        self.head_since = perf_counter()
        cap = self.proxy.admit_connection(self)
        if cap is not None:
            # Refused before reading anything: the cheapest answer there is, and counted by reason.
            self.refused = True
            self.proxy.metrics.bound(self.proxy.metrics.connections_refused, cap).inc()
            scope = "from this address" if cap == "per_client" else "on this server"
            writer = cast(asyncio.Transport, transport)
            writer.write(render(responses.too_many_connections(scope), "%032x" % random.getrandbits(128), keep_alive=False))
            writer.close()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        self.last_activity = self.loop.time()
        self.silent = False
        if self.head_since is None and (self.parsing is None or not self.parsing.head_complete):
            self.head_since = perf_counter()
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            self._upgraded()
        except HttpParserCallbackError:
            log.exception("request parsing failed")
            self._malformed("the request could not be processed")
        except HttpParserError as exc:
            self._malformed(f"malformed HTTP request: {exc}")
        self._advance()

    def eof_received(self) -> bool:
        ex = self.parsing
        if ex is not None and ex.head_complete and not self.refused:
            # The stream ended inside a body: that request can never be whole; answer it and stop.
            self.parsing = None
            ex.request_complete = True
            ex.keep_alive = False
            ex.close_connection = True
            if ex.error is None:
                ex.error = responses.bad_request("the request body ended early")
            if ex.started and not ex.finished:
                ex.reply(ex.error)
            self._advance()
        # A client that half-closes after its requests still gets every answer; then we close.
        if self.queue:
            self.queue[-1].close_connection = True
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.release_connection(self)
        self.transport = None
        for exchange in self.queue:
            exchange.client_lost()
            exchange.release_body()
        self.queue.clear()
        if self.parsing is not None:
            self.parsing.release_body()
            self.parsing = None

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.queue and self.queue[0].upstream is not None:
            self.queue[0].upstream.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.queue and self.queue[0].upstream is not None:
            self.queue[0].upstream.resume_reading()

    # httptools callbacks

    def on_url(self, url: bytes) -> None:
        # The target is the first part of every request, so the exchange starts here
        # (one callback fewer per request than on_message_begin).
        exchange = self.parsing
        if exchange is None:
            exchange = self.parsing = Exchange(self)
            if self.head_since is None:
                self.head_since = perf_counter()  # a pipelined request that began in an earlier read
        exchange.target += url
        exchange.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        if ex.head_complete:
            return  # trailer fields of a chunked body: not forwarded
        ex.head_size += len(name) + len(value) + 4
        if ex.head_size > MAX_HEAD_BYTES:
            if ex.error is None:
                ex.error = responses.headers_too_large(MAX_HEAD_BYTES)
            return
        kind = _SPECIAL.get(name.lower())
        if kind is None:
            ex.head_parts += (name, b": ", value, b"\r\n")
        elif kind == _CONTENT_LENGTH:
            # Not forwarded: the body is buffered, and the upstream gets the length of what arrived.
            ex.content_length = int(value)
            ex.framed = True
        elif kind == _TRANSFER_ENCODING:
            # llhttp has already refused any coding it cannot decode (a request whose last coding is
            # not chunked has no knowable length); what it hands on_body is the decoded body.
            ex.framed = True
        elif kind == _CONNECTION:
            ex.connection_tokens = value if ex.connection_tokens is None else ex.connection_tokens + b"," + value
        elif kind == _FORWARDED_FOR:
            ex.forwarded_for = value if ex.forwarded_for is None else ex.forwarded_for + b", " + value
        elif kind == _FORWARDED_PROTO:
            ex.forwarded_proto = value.strip()
        elif kind == _REQUEST_ID:
            ex.incoming_request_id = value.strip()
        elif kind == _TRACEPARENT:
            ex.incoming_traceparent = value
        elif kind == _USER_ID:
            ex.user_header = value.strip() or None
            ex.head_parts += (name, b": ", value, b"\r\n")
        elif kind == _CREDENTIAL:
            ex.credential = value
            ex.head_parts += (name, b": ", value, b"\r\n")
        elif kind == _API_KEY:
            ex.api_key = value
            ex.head_parts += (name, b": ", value, b"\r\n")
        elif kind == _HOST:
            if ex.has_host and ex.error is None:
                # Which of two Hosts would the upstream route by? (RFC 9112 3.2: answer 400.)
                ex.error = responses.bad_request("more than one Host field")
            ex.has_host = True
            ex.head_parts += (name, b": ", value, b"\r\n")
        elif kind == _EXPECT:
            if value.strip().lower() == b"100-continue":
                ex.expect_continue = True
            else:
                ex.head_parts += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        ex.head_complete = True
        ex.started_at = perf_counter()
        self.head_since = None
        parser = self.parser
        ex.method = parser.get_method()
        ex.is_head = ex.method == b"HEAD"
        ex.keep_alive = parser.should_keep_alive()
        if parser.get_http_version() == "1.0":
            ex.http10 = True
        self.queue.append(ex)
        if len(self.queue) > MAX_PIPELINE:
            self.pause_reading(_PAUSED_BY_PIPELINE)

    def on_body(self, body: bytes) -> None:
        assert self.parsing is not None
        self.parsing.on_body(body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        self.parsing = None
        ex.on_request_complete()

    # Driving exchanges

    def _advance(self) -> None:
        """Start the request at the front of the queue; move on as each one finishes."""
        if self._advancing:
            return
        self._advancing = True
        queue = self.queue
        try:
            while queue:
                ex = queue[0]
                if not ex.started:
                    ex.start()
                elif ex.waiting_body and ex.request_complete:
                    ex.body_ready()
                if not (ex.response_done and ex.request_complete):
                    break
                queue.popleft()
                if ex.close_connection:
                    self.close()
                    break
        finally:
            self._advancing = False
        if self._paused & _PAUSED_BY_PIPELINE and len(queue) <= MAX_PIPELINE // 2:
            self.resume_reading(_PAUSED_BY_PIPELINE)

    def exchange_finished(self, exchange: Exchange) -> None:
        if exchange.close_connection:
            self.close()
        else:
            self._advance()

    def _upgraded(self) -> None:
        # llhttp stops at a CONNECT or an Upgrade request; neither is proxied, and the stream is over.
        ex = self.queue[-1] if self.queue else None
        if ex is not None:
            ex.close_connection = True
            if ex.method == b"CONNECT":
                ex.error = responses.method_not_allowed()
        self.pause_reading(_PAUSED_BY_PIPELINE)

    def _malformed(self, message: str) -> None:
        ex = self.parsing
        self.parsing = None
        self.pause_reading(_PAUSED_BY_PIPELINE)
        error = responses.bad_request(message)
        if ex is not None and ex.head_complete:
            # The body broke its framing: this request is the last one on the connection.
            ex.request_complete = True
            ex.keep_alive = False
            ex.close_connection = True
            if not ex.started:
                ex.error = error
            elif not ex.response_begun:
                ex.reply(error)
            else:
                self.close()
            return
        ex = ex or Exchange(self)
        ex.started_at = perf_counter()
        ex.error = error
        ex.request_complete = ex.head_complete = True
        ex.keep_alive = False
        ex.close_connection = True
        self.queue.append(ex)

    # Plumbing

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def is_idle(self) -> bool:
        return not self.queue and self.parsing is None

    def check_deadlines(self, now: float, clock: float) -> None:
        """Enforce the total deadlines of the head and body being read, then the idle timeout.

        Deadlines, not idle timers: a client trickling a byte a second never resets them.
        """
        p = self.proxy
        ex = self.parsing
        if ex is not None and ex.head_complete:
            if clock - ex.started_at > p.body_timeout:
                p.metrics.bound(p.metrics.client_timeouts, "body").inc()
                if ex.started and not ex.finished:
                    ex.close_connection = True
                    ex.reply(responses.request_timeout("body"))
                self.close()
                return
        elif self.head_since is not None and clock - self.head_since > p.header_timeout:
            p.metrics.bound(p.metrics.client_timeouts, "head").inc()
            # A connection that never sent a byte is closed without an answer (as nginx does): a
            # client that opened it ahead of time would otherwise read the 408 as its next response.
            if not self.queue and not self.silent:
                self.write(render(responses.request_timeout("head"), "%032x" % random.getrandbits(128), keep_alive=False))
            self.close()
            return
        self.check_idle(now, p.client_timeout)

    def check_idle(self, now: float, timeout: float) -> None:
        """Close a connection silent for `timeout`, unless it only waits for its upstream."""
        if now - self.last_activity <= timeout:
            return
        if self.queue and self.queue[0].request_complete and self.queue[0].started:
            return
        if self.queue and self.queue[0].started and not self.queue[0].finished:
            self.queue[0].close_connection = True
            self.queue[0].reply(responses.LocalError(408, "request_timeout", "the request was not received in time"))
        self.close()

    def pause_reading(self, reason: int = _PAUSED_BY_UPSTREAM) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def resume_reading(self, reason: int = _PAUSED_BY_UPSTREAM) -> None:
        was = self._paused
        self._paused &= ~reason
        if was and not self._paused and self.transport is not None:
            self.transport.resume_reading()
