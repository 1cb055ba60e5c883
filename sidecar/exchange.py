"""One request through the sidecar: admission (limits, shedding, health), routing, forwarding, accounting."""

from __future__ import annotations

import logging
import random
import re
from time import perf_counter
from typing import TYPE_CHECKING

from servicekit.addresses import client_address
from servicekit.ids import SAFE_ID_PATTERN
from sidecar import responses
from sidecar.canary import user_from_chat_body, user_key
from sidecar.responses import LocalError, render
from sidecar.routes import CHAT_ROUTE, OTHER, Route, resolve
from sidecar.tracing import RequestTrace

if TYPE_CHECKING:
    from sidecar.proxy import ClientConnection, Proxy
    from sidecar.upstream import UpstreamConnection, UpstreamPool

log = logging.getLogger("sidecar.proxy")
_REQUEST_ID = re.compile(SAFE_ID_PATTERN.encode())  # the bot accepts the same ids
# Safe to send again when a reused connection turns out to have been closed by the upstream (RFC 9110 9.2.2).
_IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"))
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_ONLY = (400, 413, 431)
# Fields the sidecar reads, frames or adds itself. A `Connection` header naming one of them does not
# remove it: the request the upstream parses must be the request the sidecar admitted (RFC 9110 7.6.1
# lets a sender name any field, but dropping framing or routing fields would split or re-route it).
_NOT_NOMINATABLE = frozenset((
    b"content-length", b"transfer-encoding", b"host", b"authorization", b"x-api-key", b"x-user-id",
    b"x-forwarded-for", b"x-forwarded-proto", b"x-request-id", b"traceparent", b"expect",
))


class Exchange:
    """The state of one request, from its parsed head to its last response byte.

    The client connection fills in the head while parsing, then calls `start` when the
    request reaches the front of its connection's queue. Everything after that is driven
    by callbacks: body bytes from the client, response bytes from the upstream connection.
    """

    # Defaults live on the class: a new exchange only sets what differs, which keeps the
    # per-request constructor (run for every request, often on a cold cache) short.
    started_at = 0.0
    method = b"GET"
    target = b""
    head_size = 0
    error: LocalError | None = None
    content_length = 0
    framed = False  # the client sent Content-Length or Transfer-Encoding: the upstream gets a length
    expect_continue = False
    keep_alive = True
    http10 = False
    is_head = False
    forwarded_for: bytes | None = None
    forwarded_proto: bytes | None = None
    incoming_request_id: bytes | None = None
    incoming_traceparent: bytes | None = None
    user_header: bytes | None = None
    credential: bytes | None = None
    api_key: bytes | None = None
    connection_tokens: bytes | None = None
    has_host = False
    route: Route = OTHER
    request_id = ""
    trace: RequestTrace | None = None
    upstream_name = "stable"
    upstream: UpstreamConnection | None = None
    started = False
    admitted = False
    waiting_body = False
    discard = False
    continued = False
    body_size = 0
    buffered = 0  # bytes of this body counted in the proxy's buffer budget
    request_complete = False
    head_complete = False
    status = 0
    response_begun = False
    response_done = False
    close_connection = False
    payload: bytes | None = None
    retried = False
    finished = False

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.proxy: Proxy = conn.proxy
        self.client_ip = conn.peer_ip
        self.head_parts: list[bytes] = [b""]
        self.body: list[bytes] = []

    # Admission, in the order of docs/architecture.md "Flow 3"

    def start(self) -> None:
        """Identify, route and admit the request; answer it here if it must be refused."""
        self.started = True
        p = self.proxy
        resolved = resolve(self.target)
        if resolved is not None:
            self.route, self.target = resolved
        trace = self.trace = p.tracing.start(self.incoming_traceparent, self.route.label)
        rid = self.incoming_request_id
        if rid is not None and _REQUEST_ID.fullmatch(rid):
            self.request_id = rid.decode()
        elif self.incoming_traceparent is None:
            self.request_id = trace.trace_id  # a new trace is this request alone: one id serves both
        else:
            self.request_id = "%032x" % random.getrandbits(128)
        if self.forwarded_for and self.conn.trusted:
            self.client_ip = client_address(self.client_ip, self.forwarded_for.decode("latin-1"), p.trusted_proxies)
        if p.canary is not None:
            self.upstream_name = p.choose_upstream(user_key(self.user_header, None, self.client_ip))
        if self.error is not None:
            return self.reply(self.error)
        if resolved is None:
            return self.reply(responses.bad_request("the request target is not a path"))
        if self.route.blocked:
            return self.reply(responses.not_found())
        if self.content_length > p.max_body:
            return self.reply(responses.payload_too_large(p.max_body))
        if not self.request_complete:
            # The body is read whole before anything else happens (nginx's proxy_request_buffering):
            # a slow client then holds only its own connection, never an upstream one or an in-flight slot.
            self.waiting_body = True
            self._continue()
            return
        self.body_ready()

    def body_ready(self) -> None:
        """The whole request has arrived: route by its user (chat body), then apply limits and admit."""
        self.waiting_body = False
        p = self.proxy
        if (
            p.canary is not None and self.user_header is None and self.route.label == CHAT_ROUTE
            and self.method == b"POST" and self.body
        ):
            user = user_from_chat_body(b"".join(self.body))
            if user is not None:
                self.upstream_name = p.choose_upstream(user_key(None, user, self.client_ip))
        self.check_limits()

    @property
    def presented_key(self) -> bytes | None:
        """The API key as the bot reads it: `Authorization: Bearer <key>`, else `X-API-Key: <key>`."""
        credential = self.credential
        if self.api_key is not None and (credential is None or not credential.lstrip()[:7].lower() == b"bearer "):
            return b"Bearer " + self.api_key.strip()
        return credential

    def check_limits(self) -> None:
        """Apply the rate-limit rules: inline when they live in memory, in a task when in Redis."""
        limiter = self.proxy.limiter
        if limiter is not None:
            if not limiter.is_async:
                rejection = limiter.check(self.route, self.client_ip, self.presented_key, self.upstream_name)
                if rejection is not None:
                    return self.reply(responses.rate_limited(rejection.rule, rejection.headers()))
            elif limiter.rules_for(self.route):
                self.proxy.loop.create_task(self._check_limits_async())
                return
        self.admit()

    async def _check_limits_async(self) -> None:
        limiter = self.proxy.limiter
        assert limiter is not None
        rejection = await limiter.check_async(self.route, self.client_ip, self.presented_key, self.upstream_name)
        if self.finished:
            return
        if rejection is not None:
            self.reply(responses.rate_limited(rejection.rule, rejection.headers()))
        else:
            self.admit()

    def admit(self) -> None:
        """Shed when full or when the upstream is down; otherwise forward on a pooled connection."""
        p = self.proxy
        name = self.upstream_name
        if p.draining:
            p.metrics.bound(p.metrics.shed, "draining", name).inc()
            return self.reply(responses.shutting_down())
        if p.in_flight >= p.max_in_flight:
            p.metrics.bound(p.metrics.shed, "max_in_flight", name).inc()
            return self.reply(responses.overloaded(1))
        if not p.health[name].up:
            if name != "stable" and p.health["stable"].up:
                # A sick canary hands its users back to stable rather than failing them.
                name = self.upstream_name = "stable"
            else:
                p.metrics.bound(p.metrics.shed, "upstream_down", name).inc()
                return self.reply(responses.upstream_down(p.retry_after_down))
        p.in_flight += 1
        p.in_flight_by[name] += 1
        self.admitted = True
        self._continue()
        pool = p.pools[name]
        conn = pool.take()
        if conn is None:
            p.loop.create_task(self._connect(pool))
        else:
            self.send(conn)

    def _continue(self) -> None:
        if self.expect_continue and not self.continued and not self.request_complete:
            self.continued = True
            self.conn.write(_CONTINUE)

    # Forwarding

    async def _connect(self, pool: UpstreamPool) -> None:
        try:
            conn = await pool.connect()
        except TimeoutError:
            return self._connect_failed(pool.name, "connect_timeout", responses.gateway_timeout("the upstream did not accept the connection in time"))
        except OSError:
            return self._connect_failed(pool.name, "connect_refused", responses.bad_gateway("could not connect to the upstream"))
        if self.finished:
            pool.release(conn)
            return
        if self.payload is not None:
            self.upstream = conn
            conn.begin(self, self.payload)
        else:
            self.send(conn)

    def _connect_failed(self, upstream: str, kind: str, error: LocalError) -> None:
        p = self.proxy
        p.health[upstream].record_failure()
        p.metrics.upstream_errors.labels(upstream, kind).inc()
        self.reply(error)

    def send(self, conn: UpstreamConnection) -> None:
        """Write the whole request, head and buffered body, in one write, framed by its length."""
        parts = self.head_parts
        if self.connection_tokens:
            parts = _without_listed(parts, self.connection_tokens)
        parts[0] = b"%s %s HTTP/1.1\r\n" % (self.method, self.target)
        trace = self.trace
        assert trace is not None
        peer = self.conn.peer_ip_bytes
        forwarded_for = self.forwarded_for + b", " + peer if self.forwarded_for else peer
        proto = self.forwarded_proto if self.forwarded_proto and self.conn.trusted else b"http"
        parts.append(
            b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\nX-Request-ID: %s\r\ntraceparent: %s\r\n"
            % (forwarded_for, proto, self.request_id.encode(), trace.traceparent())
        )
        if not self.has_host:
            # HTTP/1.0 clients may omit Host; HTTP/1.1, which we speak upstream, requires it.
            parts.append(b"Host: %s\r\n" % conn.pool.authority)
        if self.framed:
            # Always the length of what arrived (a chunked body, de-chunked, too): one framing, ours.
            parts.append(b"Content-Length: %d\r\n\r\n" % self.body_size)
        else:
            parts.append(b"\r\n")
        parts.extend(self.body)
        payload = b"".join(parts)
        if self.method in _IDEMPOTENT:
            self.payload = payload
        self.release_body()
        self.head_parts = []
        self.upstream = conn
        conn.begin(self, payload)
        if self.conn.writing_paused:
            conn.pause_reading()

    def on_body(self, data: bytes) -> None:
        """Buffer a piece of the request body (within SIDECAR_MAX_BODY_BYTES)."""
        self.body_size += len(data)
        if self.discard:
            return
        p = self.proxy
        if self.body_size > p.max_body:
            self._refuse_body(responses.payload_too_large(p.max_body))
            return
        if p.buffered + len(data) > p.max_buffered:
            # All bodies being read together have a memory budget; past it, shed this one.
            p.metrics.bound(p.metrics.shed, "body_buffer", self.upstream_name).inc()
            self._refuse_body(responses.overloaded(1))
            return
        p.buffered += len(data)
        self.buffered += len(data)
        self.body.append(data)

    def _refuse_body(self, error: LocalError) -> None:
        """Stop buffering this body and answer `error` (now, or when the request reaches the front)."""
        self.release_body()
        if self.started:
            self.reply(error)
        elif self.error is None:
            self.error = error
            self.discard = True

    def release_body(self) -> None:
        """Hand the buffered body's bytes back to the proxy's budget."""
        if self.buffered:
            self.proxy.buffered -= self.buffered
            self.buffered = 0
        self.body = []

    def on_request_complete(self) -> None:
        """The client has sent the whole request."""
        self.request_complete = True

    # Callbacks from the upstream connection

    def relay(self, out: list[bytes]) -> None:
        """Write what the upstream connection prepared for the client, in one write."""
        self.conn.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def response_complete(self) -> None:
        """The whole response has been relayed."""
        self.upstream = None
        self.response_done = True
        if not self.request_complete:
            self.discard = True
        self.finish()
        self.conn.exchange_finished(self)

    def upstream_broken(self, message: str, *, started: bool, reused: bool = False) -> None:
        """The upstream closed or garbled the exchange: retry once, answer 502, or cut the client off."""
        if self.finished:
            return
        self.upstream = None
        p = self.proxy
        if started:
            self._abort(f"{message} mid-response")
            return
        if reused and self.payload is not None and not self.retried:
            # The upstream closed an idle keep-alive connection as we reused it: one fresh attempt.
            self.retried = True
            p.loop.create_task(self._connect(p.pools[self.upstream_name]))
            return
        p.metrics.upstream_errors.labels(self.upstream_name, "reset").inc()
        self.reply(responses.bad_gateway(message))

    def upstream_timed_out(self, *, started: bool) -> None:
        """The upstream stayed silent past the read timeout."""
        if self.finished:
            return
        self.upstream = None
        p = self.proxy
        p.metrics.upstream_errors.labels(self.upstream_name, "read_timeout").inc()
        if started:
            self._abort("the upstream went silent mid-response")
        else:
            self.reply(responses.gateway_timeout(f"no response from the upstream within {p.read_timeout:g}s"))

    # Endings

    def reply(self, error: LocalError) -> None:
        """Answer locally; keep the connection only when the request's framing is certain."""
        if self.finished:
            return
        keep = (
            self.keep_alive and not self.close_connection and error.status not in _STATUS_ONLY
            and not self.proxy.draining and (self.request_complete or not self.expect_continue or self.continued)
        )
        self.conn.write(render(error, self.request_id, keep_alive=keep, http10=self.http10))
        self.status = error.status
        self.response_done = True
        self.discard = True
        self.close_connection = not keep
        self._drop_upstream()
        self.finish()
        self.conn.exchange_finished(self)

    def client_lost(self) -> None:
        """The client went away: drop the upstream side; 499 in nginx's convention."""
        if self.finished or not self.started:
            return
        self._drop_upstream()
        if not self.response_begun:
            self.status = 499
        self.finish()

    def _abort(self, why: str) -> None:
        extra = {"http.request.id": self.request_id, "labels.upstream": self.upstream_name}
        if self.trace is not None:
            extra["trace.id"] = self.trace.trace_id
            extra["span.id"] = self.trace.span_id
        log.error("%s; closing the client connection", why, extra=extra)
        self.close_connection = True
        self.finish()
        self.conn.close()

    def _drop_upstream(self) -> None:
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.exchange = None
            upstream.close()

    def finish(self) -> None:
        """Account for the request exactly once: metrics, span, access log."""
        if self.finished:
            return
        self.finished = True
        p = self.proxy
        if self.buffered:
            self.release_body()
        if self.admitted:
            p.in_flight -= 1
            p.in_flight_by[self.upstream_name] -= 1
        elapsed = perf_counter() - self.started_at
        route = self.route.label
        trace = self.trace
        p.metrics.observe_request(route, self.status, self.upstream_name, elapsed, trace.exemplar() if trace else None)
        if trace is not None:
            trace.end(self.status, route, self.upstream_name)
        access_log = p.access_log
        if access_log is not None:
            method = self.method.decode("latin-1")
            path = self.target.partition(b"?")[0][:512].decode("utf-8", "replace")
            # Already nested as ECS, so the formatter only serialises it (servicekit.logs).
            document = {
                "http": {"request": {"method": method, "id": self.request_id}, "response": {"status_code": self.status}},
                "url": {"path": path},
                "event": {"duration": int(elapsed * 1e9)},
                "client": {"ip": self.client_ip},
                "labels": {"route": route, "platform": self.route.platform, "upstream": self.upstream_name},
            }
            if trace is not None:
                document["trace"] = {"id": trace.trace_id}
                document["span"] = {"id": trace.span_id}
            access_log.write(f"{method} {path} {self.status}", document)


def _without_listed(parts: list[bytes], tokens: bytes) -> list[bytes]:
    """Drop the fields a Connection header named: they were meant for one hop only (RFC 9110 7.6.1).

    `parts` is a head as the client connection builds it: a start line, then (name, ": ", value, CRLF).
    """
    names = {token.strip().lower() for token in tokens.split(b",")} - {b"", b"close", b"keep-alive"} - _NOT_NOMINATABLE
    if not names:
        return parts
    kept: list[bytes] = [parts[0]]
    for i in range(1, len(parts) - 3, 4):
        if parts[i].lower() not in names:
            kept.extend(parts[i:i + 4])
    return kept
