"""Bot processes for async tests: started without blocking the loop that runs the fakes they call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port
from tests.support.processes import ROOT, Process, python_module

# The Telegram adapter as shipped, against a stand-in Bot API (TELEGRAM_API_BASE).
TELEGRAM_TOKEN = "123456:process-test-token"
TELEGRAM_SECRET = "process_test_secret"
TELEGRAM_SEND = f"/bot{TELEGRAM_TOKEN}/sendMessage"
TELEGRAM_ENV = {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET}
TELEGRAM_WEBHOOK = "/telegram/webhook"
TELEGRAM_HEADERS = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET, "Content-Type": "application/json"}


def telegram_update(update_id: int, text: str, chat_id: int = 42) -> bytes:
    """A Telegram webhook update carrying one text message, as the Bot API posts it."""
    import orjson

    return orjson.dumps({"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_700_000_000, "text": text,
        "chat": {"id": chat_id, "type": "private"}, "from": {"id": chat_id, "is_bot": False, "first_name": "T"},
    }})


class BotProcesses:
    """`python -m bot` processes, as operators run them (Telegram on unless `env` says otherwise), started
    without blocking the test's event loop; each stopped (or killed) by its own pid."""

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = dict(TELEGRAM_ENV if env is None else env)
        self.started: list[Process] = []

    async def start(self, env: Mapping[str, str], name: str = "bot") -> tuple[Process, str]:
        """Start one bot (data in workdir/name, so a restart under the same name finds its queue)."""
        port = free_port()
        full_env = {"BOT_PORT": str(port), "BOT_DATA_DIR": str(self.workdir / name), **self.env, **env}
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


@contextlib.contextmanager
def running_bot(workdir: Path, env: Mapping[str, str], module: str = "bot") -> Iterator[str]:
    """One bot process (`python -m <module>`) on a free port for a whole test module; yields its base URL.

    Telemetry is on, as shipped. Fails the module if the bot logged a traceback, or counted a
    500 (a request it could not answer properly) in its own metrics.
    """
    port = free_port()
    full_env = {"BOT_PORT": str(port), "BOT_DATA_DIR": str(workdir / "data"), **env}
    proc = Process(f"bot-{port}", python_module(module), full_env, workdir)
    base = f"http://127.0.0.1:{port}"
    counted = ""
    try:
        proc.wait_http(base + "/health")
        yield base
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            counted = resp.read().decode()
    finally:
        proc.stop()
    assert "Traceback" not in proc.output(), proc.output()[-4000:]
    assert 'status="500"' not in counted and 'code="internal_error"' not in counted, [
        line for line in counted.splitlines() if 'status="500"' in line or "internal_error" in line
    ]


async def metric(http: aiohttp.ClientSession, base: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    async with http.get(base + "/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    """Await `check()` until it returns true; fail naming `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.05)


async def run_dlq(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot dlq ...` as an operator runs it, off the event loop."""
    return await asyncio.to_thread(
        subprocess.run, python_module("bot", "dlq", *args), env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
