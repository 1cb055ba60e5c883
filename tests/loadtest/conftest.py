"""Real bot and sidecar processes for load runs, on free ports, stopped by pid afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import Process, python_module

# A real rule on the chat route, set above any rate these tests offer unless a test lowers it.
RULES = """\
rules:
  - name: chat_total
    routes: [/api/v1/chat]
    key: route
    limits: [{limit}/second]
    strategy: fixed-window
"""


@dataclass(frozen=True)
class Stack:
    entry: str  # the sidecar's public port: what clients load
    bot: str
    sidecar_admin: str

    def loadtest_args(self) -> list[str]:
        return ["--host", self.entry, "--bot-metrics", self.bot + "/metrics",
                "--sidecar-metrics", self.sidecar_admin + "/metrics"]


@pytest.fixture
def start_stack(start_bot, tmp_path: Path) -> Iterator[Callable[..., Stack]]:  # type: ignore[no-untyped-def]
    """Start a bot and a sidecar in front of it; `chat_limit` is the sidecar's chat rate limit per second."""
    sidecars: list[Process] = []

    def start(bot_env: dict[str, str] | None = None, chat_limit: int = 1000) -> Stack:
        _, bot = start_bot(bot_env)
        rules = tmp_path / f"rules-{len(sidecars)}.yaml"
        rules.write_text(RULES.format(limit=chat_limit))
        port, admin = free_port(), free_port()
        env = {
            "SIDECAR_PORT": str(port), "SIDECAR_ADMIN_PORT": str(admin), "SIDECAR_UPSTREAM": bot,
            "SIDECAR_RATE_LIMITS": str(rules), "SIDECAR_LOG_FILE": str(tmp_path / f"sidecar-{port}.log"),
        }
        sidecar = Process(f"sidecar-{port}", python_module("sidecar"), env, tmp_path)
        sidecars.append(sidecar)
        sidecar.wait_http(f"http://127.0.0.1:{admin}/sidecar/ready")
        return Stack(f"http://127.0.0.1:{port}", bot, f"http://127.0.0.1:{admin}")

    yield start
    for sidecar in sidecars:
        sidecar.stop()
