"""Real bot and sidecar processes for load runs, on free ports, stopped by pid afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.loadtest.stack import RULES, Stack, StartBot, StartStack
from tests.support.ports import free_port
from tests.support.processes import Process, python_module


@pytest.fixture
def start_stack(start_bot: StartBot, tmp_path: Path) -> Iterator[StartStack]:
    """Start a bot behind a sidecar with its default rate limits, or one chat rule of `chat_limit` req/s."""
    sidecars: list[Process] = []

    def start(bot_env: dict[str, str] | None = None, chat_limit: int | None = None) -> Stack:
        _, bot = start_bot(bot_env)
        port, admin = free_port(), free_port()
        env = {
            "SIDECAR_PORT": str(port), "SIDECAR_ADMIN_PORT": str(admin), "SIDECAR_UPSTREAM": bot,
            "SIDECAR_LOG_FILE": str(tmp_path / f"sidecar-{port}.log"),
        }
        if chat_limit is not None:
            rules = tmp_path / f"rules-{port}.yaml"
            rules.write_text(RULES.format(limit=chat_limit))
            env["SIDECAR_RATE_LIMITS"] = str(rules)
        sidecar = Process(f"sidecar-{port}", python_module("sidecar"), env, tmp_path)
        sidecars.append(sidecar)
        sidecar.wait_http(f"http://127.0.0.1:{admin}/sidecar/ready")
        return Stack(f"http://127.0.0.1:{port}", bot, f"http://127.0.0.1:{admin}")

    yield start
    for sidecar in sidecars:
        sidecar.stop()
