"""A slow-client attack and a normal client beside it, for the sidecar's tests and its benchmark.

The attacker holds many connections from one loopback address, each sending a request head
(or body) at a byte a second, and reopens every connection the server closes. The normal
client, from another loopback address, sends one request at a time on a fresh connection.
"""

from __future__ import annotations

import resource
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

ATTACKER = "127.0.0.3"
NORMAL = "127.0.0.2"
_OPENINGS = {
    # A webhook with a large declared body, then one body byte a second.
    "body": (b"POST /telegram/webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
             b"Content-Length: 100000\r\n\r\n{", b"x"),
    # A request line, then a header name that grows by one byte a second and never ends.
    "head": (b"POST /telegram/webhook HTTP/1.1\r\nHost: bot\r\nX-", b"a"),
}


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft descriptor limit towards the hard one; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = min(hard, max(needed, soft)) if hard != resource.RLIM_INFINITY else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


@dataclass
class SlowClients:
    """`count` connections from ATTACKER to 127.0.0.1:port, each trickling a head or a body."""

    port: int
    count: int
    mode: str = "body"
    source: str = ATTACKER
    opened: int = 0
    reopened: int = 0
    failed_connects: int = 0
    peak_open: int = 0
    _socks: list[socket.socket | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._opening, self._trickle = _OPENINGS[self.mode]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        raise_fd_limit(self.count * 2 + 256)
        self._socks = [self._open() for _ in range(self.count)]
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self._socks:
            if sock is not None:
                sock.close()

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2.0, source_address=(self.source, 0))
        except OSError:
            self.failed_connects += 1
            return None
        try:
            sock.sendall(self._opening)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return None
        self.opened += 1
        return sock

    @staticmethod
    def _alive(sock: socket.socket) -> bool:
        """Still held open by the server: nothing to read yet (any answer, 503 or 408, means it is done)."""
        try:
            sock.recv(4096)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            alive = 0
            for i, sock in enumerate(self._socks):
                if self._stop.is_set():
                    return
                if sock is not None and self._alive(sock):
                    try:
                        sock.send(self._trickle)
                        alive += 1
                        continue
                    except OSError:
                        pass
                if sock is not None:
                    sock.close()
                self._socks[i] = self._open()
                self.reopened += 1
            self.peak_open = max(self.peak_open, alive)


def normal_client(port: int, seconds: float, *, path: str = "/api/v1/chat", rate: float = 10.0,
                  source: str = NORMAL) -> Counter[int]:
    """Send `rate` requests a second for `seconds`, each on a new connection; count the statuses (0: failed)."""
    statuses: Counter[int] = Counter()
    body = b'{"message": "hello", "user_id": "normal-client"}'
    request = (
        b"POST %s HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (path.encode(), len(body), body)
    )
    end = time.monotonic() + seconds
    next_at = time.monotonic()
    while time.monotonic() < end:
        statuses[_one_request(port, request, source)] += 1
        next_at += 1.0 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    return statuses


def _one_request(port: int, request: bytes, source: str) -> int:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5.0, source_address=(source, 0)) as sock:
            sock.sendall(request)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return 0
                data += chunk
            return int(data.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return 0
