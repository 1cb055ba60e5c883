"""Access logs: one ECS JSON line per request, sharing the trace id the upstream receives, no secrets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.sidecar.conftest import Running, fetch


def read_lines(path: Path, wanted: Callable[[dict[str, Any]], bool], count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        found = [line for line in lines if wanted(line)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_each_request_is_one_ecs_line_with_the_forwarded_trace_and_no_secrets(
    start_upstream: Callable[..., Running], start_sidecar: Callable[..., Running], tmp_path: Path
) -> None:
    log_file = tmp_path / "sidecar.json.log"
    sidecar = start_sidecar(start_upstream().url, {"SIDECAR_LOG_FILE": str(log_file)})
    secret = "sk-very-secret-key"
    answer = fetch(
        sidecar.url + "/echo/path?token=query-secret",
        headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "req-log-1"},
    )
    forwarded = dict((k.lower(), v) for k, v in answer.json()["headers"])
    _, trace_id, span_id, _ = forwarded["traceparent"].split("-")
    assert fetch(sidecar.url + "/metrics").status == 404

    access = read_lines(log_file, lambda line: line["log"]["logger"] == "sidecar.access", 2)
    assert len(access) == 2
    line = access[0]
    assert line["message"] == "GET /echo/path 200"
    assert line["log.level"] == "info"
    assert line["service"]["name"] == "botwatch-sidecar"
    assert line["http"]["request"] == {"method": "GET", "id": "req-log-1"}
    assert line["http"]["response"]["status_code"] == 200
    assert line["url"]["path"] == "/echo/path"
    assert line["event"]["duration"] > 0
    assert line["client"]["ip"] == "127.0.0.1"
    assert line["labels"] == {"route": "other", "platform": "other", "upstream": "stable"}
    assert (line["trace"]["id"], line["span"]["id"]) == (trace_id, span_id), "the upstream's parent span is this line's span"
    assert access[1]["http"]["response"]["status_code"] == 404, "refusals are logged too"

    everything = log_file.read_text() + sidecar.process.output()
    assert secret not in everything
    assert "query-secret" not in everything
