"""A real Prometheus scrapes the real bot and answers the guides' query."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.prometheus_server import PrometheusServer
from tests.support.services import require_binary


def test_the_guides_query_returns_data_per_platform(start_bot: Any, tmp_path: Path) -> None:
    _, base = start_bot()
    prometheus = PrometheusServer(
        require_binary("prometheus"), tmp_path / "prom", {"bot": [base.removeprefix("http://")]}
    )
    prometheus.start()
    try:
        def chat() -> None:
            request = urllib.request.Request(
                base + "/api/v1/chat", data=json.dumps({"message": "hello"}).encode(),
                headers={"Content-Type": "application/json"}, method="POST",
            )
            urllib.request.urlopen(request, timeout=5).close()

        deadline = time.monotonic() + 30
        def rates() -> dict[str, float]:
            result = prometheus.series("sum(rate(bot_requests_total[1m])) by (platform)")
            return {item["metric"]["platform"]: float(item["value"][1]) for item in result}

        # Traffic keeps flowing while we wait: a rate needs two scrapes that saw different counts.
        while rates().get("api", 0.0) <= 0:
            chat()
            assert time.monotonic() < deadline, f"no chat API rate yet: {rates()}"
            time.sleep(0.25)
        assert set(rates()) >= {"api", "system"}
    finally:
        prometheus.stop()
