"""A real Prometheus scrapes the real bot and answers the guides' query."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.processes import ROOT, Process
from tests.support.prometheus_server import PrometheusServer
from tests.support.redis_server import RedisServer
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


def test_prometheus_scrapes_alertmanager_redis_through_its_exporter_and_itself(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The committed jobs against real servers: Debian's Alertmanager and Redis exporter, a real Redis."""
    am_port, exporter_port = free_port(), free_port()
    started: list[Process] = []
    prometheus: PrometheusServer | None = None
    try:
        alertmanager = Process(f"alertmanager-{am_port}", [
            require_binary("prometheus-alertmanager"), f"--config.file={ROOT / 'alertmanager' / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
        ], {}, tmp_path)
        started.append(alertmanager)
        alertmanager.wait_http(f"http://127.0.0.1:{am_port}/-/ready")
        exporter = Process(f"redis-exporter-{exporter_port}", [
            require_binary("prometheus-redis-exporter"), f"-redis.addr=redis://127.0.0.1:{redis_server.port}",
            f"-web.listen-address=127.0.0.1:{exporter_port}",
        ], {}, tmp_path)
        started.append(exporter)
        exporter.wait_http(f"http://127.0.0.1:{exporter_port}/metrics")
        prometheus = PrometheusServer(require_binary("prometheus"), tmp_path / "prom", {
            "alertmanager": [f"127.0.0.1:{am_port}"], "redis": [f"127.0.0.1:{exporter_port}"],
        })
        prometheus.start()

        def up() -> dict[str, float]:
            return {s["metric"]["job"]: float(s["value"][1]) for s in prometheus.series("up")}  # type: ignore[union-attr]

        deadline = time.monotonic() + 30
        while not {"alertmanager", "redis", "prometheus"} <= {job for job, value in up().items() if value == 1}:
            assert time.monotonic() < deadline, f"jobs not up: {up()}"
            time.sleep(0.25)
        assert [float(s["value"][1]) for s in prometheus.series('redis_up{job="redis"}')] == [1.0]
        assert prometheus.series('alertmanager_build_info{job="alertmanager"}')
    finally:
        if prometheus is not None:
            prometheus.stop()
        for proc in reversed(started):
            proc.stop()
