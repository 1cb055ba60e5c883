"""`python -m bot` processes for long-connection tests, started without blocking the loop that serves
the platform stand-in, and stopped (or killed) by their own pid."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.bots import metric
from tests.support.ports import free_port
from tests.support.processes import Process, python_module


class ConnectionBots:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Process] = []

    async def start(self, env: Mapping[str, str], name: str = "bot") -> tuple[Process, str]:
        """Start one bot; its data lives in workdir/name, so a restart under the same name finds its queue."""
        port = free_port()
        full_env = {"BOT_PORT": str(port), "BOT_DATA_DIR": str(self.workdir / name), **env}
        proc = Process(f"{name}-{port}", python_module("bot"), full_env, self.workdir)
        self.started.append(proc)
        base = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(proc.wait_http, base + "/health")
        return proc, base

    async def kill(self, proc: Process) -> None:
        await asyncio.to_thread(proc.kill)

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()


async def ready(base: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(base + "/ready") as resp:
        return resp.status, await resp.json()


async def sample(base: str, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as http:
        return await metric(http, base, name, **labels)
