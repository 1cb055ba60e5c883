"""A raw upstream that records the bytes it receives and parses them with h11, a strict independent parser.

It is the oracle of the smuggling tests: whatever the sidecar sends must parse, one request at a
time, exactly as the client's request was admitted. Each request is answered with a small JSON
body naming its sequence number, so a client can tell which upstream request its response
belongs to. Special targets misbehave on purpose:

- a target containing `/slow` is answered after half a second;
- a target containing `/unsolicited` is answered, then a second response nobody asked for follows;
- a request with `X-Respond-With: <hex>` is answered with exactly those bytes.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field

import h11


@dataclass
class Received:
    """One request as h11 parsed it off an upstream connection."""

    seq: int
    connection: int
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name.lower()]


@dataclass
class RecordingUpstream:
    """Listens on a free loopback port; one thread per connection; stop() closes everything."""

    requests: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    raw: dict[int, bytearray] = field(default_factory=dict)
    # Each connection's bytes as its recv() calls returned them: how many writes a request took.
    reads: dict[int, list[bytes]] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(512)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"RecordingUpstream(port={self.port}, requests={len(self.requests)}, errors={self.errors[-3:]})"

    def stop(self) -> None:
        self._stopped = True
        self._sock.close()
        with self._lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()

    def received(self, marker: str) -> list[Received]:
        """The requests whose target contains `marker` (each test case uses its own)."""
        with self._lock:
            return [r for r in self.requests if marker.encode() in r.target]

    def reads_holding(self, marker: str) -> list[bytes]:
        """The recv() results, on any connection, that hold part of a request whose target has `marker`."""
        with self._lock:
            return [chunk for chunks in self.reads.values() for chunk in chunks if marker.encode() in chunk]

    def errors_since(self, start: int) -> list[str]:
        with self._lock:
            return self.errors[start:]

    def _accept(self) -> None:
        number = 0
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            number += 1
            with self._lock:
                self._connections.append(conn)
                self.raw[number] = bytearray()
                self.reads[number] = []
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=256 * 1024)
        try:
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    data = sock.recv(65536)
                    with self._lock:
                        self.raw[number] += data
                        self.reads[number].append(data)
                    parser.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    raise h11.RemoteProtocolError(f"unexpected {event!r}")
                body = bytearray()
                while True:
                    part = parser.next_event()
                    if part is h11.NEED_DATA:
                        data = sock.recv(65536)
                        if not data:
                            raise h11.RemoteProtocolError("connection closed inside a request body")
                        with self._lock:
                            self.raw[number] += data
                            self.reads[number].append(data)
                        parser.receive_data(data)
                    elif isinstance(part, h11.Data):
                        body += part.data
                    elif isinstance(part, h11.EndOfMessage):
                        break
                with self._lock:
                    seq = len(self.requests)
                    self.requests.append(
                        Received(seq, number, event.method, event.target, list(event.headers), bytes(body))
                    )
                scripted = dict(event.headers).get(b"x-respond-with")
                if scripted is not None:
                    # The test's own response bytes, verbatim; the next request starts a fresh parse.
                    raw = bytes.fromhex(scripted.decode())
                    sock.sendall(raw)
                    if b"connection: close" in raw.lower():
                        return  # a body framed by the end of the connection ends here
                    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=256 * 1024)
                    continue
                if b"/slow" in event.target:
                    time.sleep(0.5)
                answer = json.dumps({"seq": seq, "target": event.target.decode("latin-1"), "body_length": len(body)}).encode()
                response = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Upstream-Seq: %d\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (seq, len(answer), answer)
                )
                sock.sendall(response)
                parser.send(h11.Response(status_code=200, headers=[("Content-Length", str(len(answer)))]))
                parser.send(h11.Data(data=answer))
                parser.send(h11.EndOfMessage())
                if b"/unsolicited" in event.target:
                    time.sleep(0.2)
                    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Upstream-Seq: -1\r\n\r\nunsolicited"
                    sock.sendall(extra)
                if parser.our_state is h11.MUST_CLOSE:
                    return
                parser.start_next_cycle()
        except h11.ProtocolError as exc:
            if not self._stopped:
                with self._lock:
                    self.errors.append(f"connection {number}: {exc}")
        except OSError:
            pass
        finally:
            with self._lock:
                self.closed.add(number)
            sock.close()
