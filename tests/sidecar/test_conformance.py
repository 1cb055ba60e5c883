"""Differential conformance: generated requests and responses through the real sidecar, judged by h11.

Requests mixing framing fields, `Connection` lists, chunk encodings, obs-fold, odd whitespace,
pipelining and `Expect` go through a real sidecar process to an upstream that parses what
arrives with h11. Whatever the sidecar admits must reach the upstream as exactly one request,
with the method, target and body the client sent (as h11 reads the client's bytes), and with
explicit framing. Responses the other way must reach the client as exactly one well-framed
response per request, and a response nobody asked for must cost the upstream connection.

Runs are deterministic (derandomized, no example database) and bounded, so CI repeats them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import h11
import pytest
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from tests.sidecar.conftest import Running, launch_sidecar
from tests.sidecar.recording_upstream import RecordingUpstream
from tests.sidecar.wire import converse

CASE = b"{case}"
SETTINGS = settings(
    max_examples=300, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
RESPONSE_SETTINGS = settings(SETTINGS, max_examples=150)


@pytest.fixture(scope="module")
def sidecar(recorder: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch_sidecar(tmp_path_factory.mktemp("conformance"), recorder.url, {"SIDECAR_BODY_TIMEOUT": "2"})
    yield running
    running.process.stop()


# Requests

SMUGGLED = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 149.154.160.1\r\n\r\n"
bodies = st.one_of(st.binary(max_size=40), st.just(SMUGGLED), st.just(b"0\r\n\r\nGET /x HTTP/1.1\r\n\r\n"))
connection_tokens = st.lists(
    st.sampled_from([
        "close", "keep-alive", "Content-Length", "transfer-encoding", "Host", "X-Forwarded-For", "Authorization",
        "X-Extra", "TE", "Upgrade", "Expect", "X-User-ID",
    ]),
    max_size=3,
)
FRAMINGS = [
    "none", "length", "chunked", "length+chunked", "length-twice", "length-twice-different", "chunked-then-identity",
    "identity", "chunked-twice", "length-plus-sign", "length-spaced", "chunked-uppercase", "chunked-in-list",
]


@st.composite
def chunked_body(draw: st.DrawFn, body: bytes) -> bytes:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
    out = b""
    for piece in pieces:
        size = b"%x" % len(piece)
        if draw(st.booleans()):
            size = size.upper()
        if draw(st.integers(0, 5)) == 0:
            size += b";ext=1"
        out += size + b"\r\n" + piece + b"\r\n"
    trailer = b"X-Trailer: t\r\n" if draw(st.integers(0, 5)) == 0 else b""
    return out + b"0\r\n" + trailer + b"\r\n"


@st.composite
def one_request(draw: st.DrawFn, index: int) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]))
    target = b"/d/%s/%d" % (CASE, index) + draw(st.sampled_from([b"", b"?q=1", b"?a=%20b&c"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 5 + [b"HTTP/1.0"]))
    eol = b"\r\n" if draw(st.integers(0, 19)) else b"\n"
    body = draw(bodies)
    # Well-framed requests most of the time, so that pipelines get past their first request.
    framing = draw(st.sampled_from(FRAMINGS[:3] * 8 + FRAMINGS))
    fields: list[bytes] = []
    host = draw(st.sampled_from(["one"] * 12 + ["none", "two"]))
    if host != "none":
        fields.append(b"Host: sidecar")
    if host == "two":
        fields.append(b"Host: elsewhere")
    payload = body
    if framing == "length":
        fields.append(b"Content-Length: %d" % len(body))
    elif framing == "length-plus-sign":
        fields.append(b"Content-Length: +%d" % len(body))
    elif framing == "length-spaced":
        fields.append(b"Content-Length:   %d \t" % len(body))
    elif framing == "length-twice":
        fields += [b"Content-Length: %d" % len(body)] * 2
    elif framing == "length-twice-different":
        fields += [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 3)]
    elif framing in ("chunked", "chunked-uppercase", "length+chunked", "chunked-in-list", "chunked-twice"):
        coding = {"chunked-uppercase": b"CHUNKED", "chunked-in-list": b"gzip, chunked"}.get(framing, b"chunked")
        fields.append(b"Transfer-Encoding: " + coding)
        if framing == "chunked-twice":
            fields.append(b"Transfer-Encoding: chunked")
        if framing == "length+chunked":
            fields.append(b"Content-Length: %d" % len(body))
        payload = draw(chunked_body(body))
    elif framing == "chunked-then-identity":
        fields.append(b"Transfer-Encoding: chunked, identity")
    elif framing == "identity":
        fields.append(b"Transfer-Encoding: identity")
    tokens = draw(connection_tokens)
    if tokens:
        fields.append(b"Connection: " + ", ".join(tokens).encode())
    if draw(st.booleans()):
        fields.append(b"X-Extra: 1")
    if draw(st.integers(0, 4)) == 0:
        fields.append(b"Expect: 100-continue")
    if draw(st.integers(0, 4)) == 0:
        fields.append(b"X-Forwarded-For: 149.154.160.1")
    oddity = draw(st.sampled_from(["none"] * 16 + ["obs-fold", "space-before-colon", "tab-value", "empty-name"]))
    if oddity == "obs-fold":
        fields.append(b"X-Folded: first" + eol + b" second")
    elif oddity == "space-before-colon":
        fields.append(b"Content-Length : 5")
    elif oddity == "tab-value":
        fields.append(b"X-Tabbed:\tvalue\t")
    elif oddity == "empty-name":
        fields.append(b": nothing")
    fields = draw(st.permutations(fields))
    head = method + b" " + target + b" " + version + eol + b"".join(field + eol for field in fields) + eol
    return head + (payload if framing != "none" or not body else b"")


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[bytes], int]:
    count = draw(st.integers(1, 3))
    return [draw(one_request(i)) for i in range(count)], draw(st.integers(0, 3))


@dataclass
class Meant:
    """A request as h11 reads the client's bytes: the independent opinion of what was sent."""

    method: bytes
    target: bytes
    body: bytes


def read_as_h11(data: bytes) -> list[Meant]:
    """The requests h11 parses from a client stream, up to the first it refuses."""
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(data)
    parsed: list[Meant] = []
    try:
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return parsed
            assert isinstance(event, h11.Request)
            body = b""
            while True:
                part = parser.next_event()
                if part is h11.NEED_DATA:
                    return parsed
                if isinstance(part, h11.Data):
                    body += part.data
                elif isinstance(part, h11.EndOfMessage):
                    break
            parsed.append(Meant(event.method, event.target, body))
            parser.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
            parser.send(h11.EndOfMessage())
            if parser.our_state is h11.MUST_CLOSE:
                return parsed
            parser.start_next_cycle()
    except h11.ProtocolError:
        return parsed


def pieces(data: bytes, split: int) -> list[bytes]:
    """Send all at once, or cut into `split` + 1 pieces (sent one by one)."""
    if not split:
        return [data]
    step = max(1, len(data) // (split + 1))
    return [data[i:i + step] for i in range(0, len(data), step)]


def check_one_in_one_out(sidecar: Running, recorder: RecordingUpstream, requests: list[bytes], split: int) -> None:
    case = uuid.uuid4().hex[:12]
    data = b"".join(requests).replace(CASE, case.encode())
    note(f"client bytes: {data!r}")
    errors = len(recorder.errors)

    got = converse(sidecar.port, pieces(data, split), len(requests), timeout=3.0, half_close=True)

    arrived = recorder.received(case)
    meant = read_as_h11(data)
    event(f"{sum(r.upstream_seq is not None for r in got.replies)} of {len(requests)} forwarded, h11 read {len(meant)}")
    assert got.error is None, got.error
    assert recorder.errors_since(errors) == [], "the upstream could not parse what the sidecar sent"
    # One in, one out: every upstream request answers exactly one client request, in order.
    assert [reply.upstream_seq for reply in got.replies if reply.upstream_seq is not None] == [r.seq for r in arrived]
    for index, reply in enumerate(got.replies):
        if reply.upstream_seq is None:
            assert reply.status in (400, 404, 405, 408, 413, 431), reply
            continue
        (sent,) = [r for r in arrived if r.seq == reply.upstream_seq]
        assert sent.header(b"transfer-encoding") == []
        assert len(sent.header(b"host")) == 1
        length = sent.header(b"content-length")
        assert length == [str(len(sent.body)).encode()] or (length == [] and sent.body == b"")
        assert sent.header(b"x-forwarded-for")[-1].endswith(b"127.0.0.1")
        # The differential part: when h11 understood the client, the upstream got what h11 read.
        if index < len(meant):
            assert (sent.method, sent.target, sent.body) == (meant[index].method, meant[index].target, meant[index].body)
    for reply in got.replies:
        if reply.status == 400:
            assert reply is got.replies[-1] and got.closed, "a request refused for its framing ends the connection"


SMUGGLING = (
    b"POST /d/{case}/0 HTTP/1.1\r\nHost: sidecar\r\nContent-Length: %d\r\nConnection: Content-Length\r\n\r\n%s"
    % (len(SMUGGLED), SMUGGLED)
)


@SETTINGS
@given(conversations())
@example(([SMUGGLING], 0))
@example(([SMUGGLING.replace(b"Connection: Content-Length", b"Connection: keep-alive, content-length")], 2))
@example(([SMUGGLING.replace(b"/metrics", b"/d/{case}/slow")], 0))
@example(([b"GET /d/{case}/0 HTTP/1.1\r\nHost: sidecar\r\nConnection: host\r\n\r\n"], 0))
@example(([b"POST /d/{case}/0 HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"], 0))
@example(([b"POST /d/{case}/0 HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n3\r\nabc\r\n0\r\n\r\n"], 1))
@example(([b"POST /d/{case}/0 HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
           b"GET /d/{case}/1 HTTP/1.1\r\nHost: s\r\n\r\n"], 0))
def test_every_admitted_request_reaches_the_upstream_once_and_unchanged(
    sidecar: Running, recorder: RecordingUpstream, conversation: tuple[list[bytes], int]
) -> None:
    requests, split = conversation
    check_one_in_one_out(sidecar, recorder, requests, split)


# Responses

@dataclass
class Scripted:
    """An upstream response, and what a proxy must do with it."""

    data: bytes
    clean: bool  # unambiguous framing: relayed with the status and body h11 reads; otherwise that or a 502
    hop_named: bool  # `Connection` names X-Hop, so it must not reach the client

    def __repr__(self) -> str:
        return f"Scripted({self.data!r})"


@st.composite
def upstream_responses(draw: st.DrawFn) -> Scripted:
    status = draw(st.sampled_from([200, 201, 204, 404, 500]))
    body = b"" if status == 204 else draw(st.binary(max_size=30))
    fields = [b"HTTP/1.1 %d X" % status]
    framing = draw(st.sampled_from(["length", "chunked", "length-twice-different", "length+chunked", "close"]))
    if framing == "length":
        fields.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "length-twice-different":
        fields += [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 1)]
        payload = body
    elif framing in ("chunked", "length+chunked"):
        fields.append(b"Transfer-Encoding: chunked")
        if framing == "length+chunked":
            fields.append(b"Content-Length: %d" % len(body))
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        fields.append(b"Connection: close")
        payload = body
    tokens = draw(st.lists(st.sampled_from(["Content-Length", "Transfer-Encoding", "X-Hop", "keep-alive"]), max_size=2))
    if framing == "close":
        tokens = []
    if tokens:
        fields.append(b"Connection: " + ", ".join(tokens).encode())
    fields.append(b"X-Hop: 1")
    if draw(st.booleans()):
        fields.insert(1, b"X-Request-ID: r")
    extra = draw(st.sampled_from([b"", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"]))
    if framing == "close":
        extra = b""
    clean = framing in ("length", "chunked", "close") and status != 204 and not {"Content-Length", "Transfer-Encoding"} & set(tokens)
    return Scripted(b"\r\n".join(fields) + b"\r\n\r\n" + payload + extra, clean, "X-Hop" in tokens)


def read_response_as_h11(data: bytes) -> tuple[int, bytes] | None:
    """What h11 makes of an upstream response (status, body), or None when it refuses it."""
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    parser.send(h11.EndOfMessage())
    parser.receive_data(data)
    parser.receive_data(b"")
    status, body = 0, b""
    try:
        while True:
            event = parser.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, body
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return None
    except h11.ProtocolError:
        return None


@RESPONSE_SETTINGS
@given(upstream_responses())
@example(Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Content-Length\r\n\r\nok", True, False))
@example(Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-ID: r\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra", True, False))
def test_every_request_gets_exactly_one_well_framed_response(sidecar: Running, recorder: RecordingUpstream, script: Scripted) -> None:
    case = uuid.uuid4().hex[:12].encode()
    scripted = script.data
    note(f"upstream response: {scripted!r}")
    first = b"GET /r/%s/0 HTTP/1.1\r\nHost: s\r\nX-Respond-With: %s\r\n\r\n" % (case, scripted.hex().encode())
    second = b"GET /r/%s/1 HTTP/1.1\r\nHost: s\r\n\r\n" % case

    got = converse(sidecar.port, [first, second], 2, timeout=3.0)

    assert got.error is None, got.error
    meant = read_response_as_h11(scripted)
    reply = got.replies[0]
    if meant is None:
        assert reply.status == 502
    elif script.clean:
        assert (reply.status, reply.body) == meant
    else:
        assert reply.status == 502 or (reply.status, reply.body) == meant
    if script.hop_named:
        assert b"x-hop" not in reply.headers
    if len(got.replies) == 2:
        # The second request is answered by its own response, never by bytes left from the first.
        assert got.replies[1].json()["target"] == f"/r/{case.decode()}/1"
    else:
        assert got.closed
    arrived = recorder.received(case.decode())
    if b"extra" in scripted and len(arrived) == 2:
        assert arrived[0].connection != arrived[1].connection, "an unsolicited response costs the upstream connection"
