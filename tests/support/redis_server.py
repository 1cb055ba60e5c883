"""A real redis-server on a free port, private to the test session."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import Process


def _pings(port: int, password: str | None = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            if password is not None:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(16).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, binary: str, workdir: Path, port: int | None = None, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        auth = f":{password}@" if password is not None else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self._binary = binary
        self.process: Process | None = None

    def start(self) -> None:
        argv = [
            self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir),
        ]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        self.process = Process(f"redis-{self.port}", argv, {}, self.workdir)
        self.process.wait_until(lambda: _pings(self.port, self.password), timeout=15, what="answering PING")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
