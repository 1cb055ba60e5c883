"""Log lines written by a real bot and a real sidecar in front of it, for the checks that compare
what Logstash, Elasticsearch and Kibana read with what the services actually write."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.processes import Process, python_module


def flatten(obj: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) pairs: ECS lines mix `"log.level": ...` with `"log": {"level": ...}`,
    which Filebeat's `expand_keys` turns into the same field."""
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flatten(value, name + ".")
        else:
            yield name, value


def status_of(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


@dataclass(frozen=True)
class ServiceLogs:
    bot: list[dict[str, Any]]
    sidecar: list[dict[str, Any]]

    @property
    def fields(self) -> set[str]:
        return {name for line in self.bot + self.sidecar for name in line}


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceLogs]:
    """A chat that fails (model down) through the sidecar, a 404, health checks: the lines both wrote."""
    workdir = tmp_path_factory.mktemp("service-logs")
    bot_port, port, admin = free_port(), free_port(), free_port()
    bot = Process(f"bot-{bot_port}", python_module("bot"), {
        "BOT_PORT": str(bot_port), "BOT_DATA_DIR": str(workdir / "data"), "BOT_LOG_FILE": str(workdir / "bot.log"),
        "MODEL_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1", "MODEL_MAX_RETRIES": "0",
    }, workdir)
    sidecar: Process | None = None
    try:
        bot.wait_http(f"http://127.0.0.1:{bot_port}/health")
        sidecar = Process(f"sidecar-{port}", python_module("sidecar"), {
            "SIDECAR_PORT": str(port), "SIDECAR_ADMIN_PORT": str(admin), "SIDECAR_RATE_LIMITS": "",
            "SIDECAR_UPSTREAM": f"http://127.0.0.1:{bot_port}", "SIDECAR_LOG_FILE": str(workdir / "sidecar.log"),
        }, workdir)
        sidecar.wait_http(f"http://127.0.0.1:{admin}/sidecar/ready")
        chat = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/chat", data=b'{"message": "hello"}',
            headers={"Content-Type": "application/json"},
        )
        assert status_of(chat) == 503
        assert status_of(urllib.request.Request(f"http://127.0.0.1:{port}/no/such/route")) == 404
        assert status_of(urllib.request.Request(f"http://127.0.0.1:{bot_port}/api/health")) == 200
    finally:
        stopped = [sidecar.stop() if sidecar else 0, bot.stop()]
    assert stopped == [0, 0]

    def lines(name: str) -> list[dict[str, Any]]:
        text = (workdir / f"{name}.log").read_text(encoding="utf-8")
        return [dict(flatten(json.loads(line))) for line in text.splitlines()]

    yield ServiceLogs(bot=lines("bot"), sidecar=lines("sidecar"))
