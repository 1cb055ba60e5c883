"""One HTTP exchange over a fresh connection with any bytes as the body, for fuzzing a real server."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(base: str, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
             timeout: float = 10.0, chunked: bool = False) -> Answer:
    """Send one request; a server that does not answer within `timeout` raises (a hang is a failure)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        if chunked:
            conn.request(method, target, body=iter([body]), headers=headers or {}, encode_chunked=True)
        else:
            conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def assert_clean_rejection_or_success(answer: Answer) -> None:
    """200-series, or a 4xx whose body is the bot's JSON error: never a 5xx, never an HTML page."""
    assert answer.status < 500, f"server error {answer.status}: {answer.body[:300]!r}"
    if answer.status >= 400:
        assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
        error = answer.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
