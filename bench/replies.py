"""Replies: how fast users get an answer, with the bot as shipped (defaults, SQLite queue, full telemetry).

Genuine Telegram updates (secret token header) are posted at a fixed rate; the bot asks an
OpenAI-compatible stand-in that answers after a set latency, and sends each reply to a Telegram
API stand-in that notes when it arrived. A reply's time is that arrival less the moment its
update was posted. `python -m bench replies [RATE:LATENCY:SECONDS ...]`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.machine import append_results
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.reply_load import ReplyRun, collect, post_updates

SECRET = "bench_replies_secret"
BOT_TOKEN = "123456:bench-replies"
# (msg/s, model latency s, seconds, settings): the two acceptance loads first, then lighter ones; the
# last row caps model calls at the former fixed pool of eight workers, for contrast in the same run.
RUNS: tuple[tuple[float, float, float, dict[str, str]], ...] = (
    (50, 3.0, 15.0, {}), (400, 0.3, 10.0, {}), (100, 0.3, 10.0, {}),
    (100, 0.3, 10.0, {"MODEL_MAX_CONCURRENCY": "8"}),
)
# A reply within the model's latency plus this passes.
ALLOWANCE = 1.0


@dataclass(frozen=True)
class Load:
    rate: float
    latency: float
    seconds: float
    env: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.env.items()) or "defaults"


def run_one(load: Load, workdir: Path) -> ReplyRun:
    """Start the stand-ins and a fresh bot with default settings, post the load, collect the replies."""
    ports = {name: free_port() for name in ("bot", "model", "telegram")}
    model = f"http://127.0.0.1:{ports['model']}"
    telegram = f"http://127.0.0.1:{ports['telegram']}"
    bot = f"http://127.0.0.1:{ports['bot']}"
    tag = f"{load.rate:g}-{load.latency:g}-{len(load.env)}"
    started: list[Process] = []
    try:
        started.append(Process(f"model-{tag}", python_module(
            "tests.support.reply_load", "model", str(ports["model"]), str(load.latency)), {}, workdir))
        started.append(Process(f"telegram-{tag}", python_module(
            "tests.support.reply_load", "telegram", str(ports["telegram"])), {}, workdir))
        started[0].wait_http(model + "/stats")
        started[1].wait_http(telegram + "/health")
        started.append(Process(f"bot-{tag}", python_module("bot"), {
            "BOT_PORT": str(ports["bot"]), "BOT_DATA_DIR": str(workdir / f"data-{tag}"),
            "MODEL_ENDPOINT": model + "/v1", "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "TELEGRAM_SECRET_TOKEN": SECRET,
            "TELEGRAM_API_BASE": telegram, **load.env,
        }, workdir))
        started[2].wait_http(bot + "/ready")

        async def go() -> ReplyRun:
            run = await post_updates(bot, SECRET, load.rate, load.seconds)
            return await collect(run, telegram, model, timeout=load.latency + 120)

        bot_process = psutil.Process(started[2].pid)
        cpu_before = sum(bot_process.cpu_times()[:2])
        run = asyncio.run(go())
        run.bot_cpu_seconds = sum(bot_process.cpu_times()[:2]) - cpu_before
        return run
    finally:
        for proc in reversed(started):
            proc.stop()


def row(load: Load, run: ReplyRun, busy: float) -> str:
    passed = run.answered == len(run.sent) and run.rejected == 0 and run.p99 <= load.latency + ALLOWANCE
    return (
        f"| {load.rate:g} msg/s × {load.seconds:g} s | {load.latency:g} s | {load.settings} | {len(run.sent)} | "
        f"{run.answered} | "
        f"{run.duplicates} | {run.replies_per_second:.1f} | {run.p50:.2f} s | {run.p99:.2f} s | {run.max_in_flight} | "
        f"{'**PASS**' if passed else '**FAIL**'} | {run.bot_cpu_seconds / max(1, run.answered) * 1000:.2f} | {busy:.1f} |"
    )


def parse(argv: list[str]) -> list[Load]:
    if not argv:
        return [Load(*r) for r in RUNS]
    return [Load(*(float(x) for x in arg.split(":"))) for arg in argv]  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    loads = parse(sys.argv[2:] if argv is None and sys.argv[1:2] == ["replies"] else (argv or []))
    lines = [
        "Bot as shipped (no tuning: SQLite queue, full telemetry, default MODEL_MAX_CONCURRENCY) behind nothing; "
        "Telegram updates with the secret token; an OpenAI-compatible stand-in answering after the model latency; "
        "a Telegram API stand-in noting each reply's arrival. Reply time = arrival at the stand-in − update posted. "
        f"PASS = every update answered once and reply p99 ≤ model latency + {ALLOWANCE:g} s. "
        "Replies/s = replies ÷ (first update posted to last reply arrived). "
        "Max in flight = most concurrent calls the model stand-in saw. Bot CPU = the bot process's user+system "
        "seconds over the run ÷ replies (webhook, model call, send, queue, telemetry): 1000 ÷ it is the replies/s "
        "one free core sustains. The machine is shared; the load average says how busy it was.",
        "",
        "| load | model latency | settings | updates | answered | duplicates | replies/s | reply p50 | reply p99 | "
        "max in-flight model calls | verdict | bot CPU ms/reply | load avg at start |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-replies-") as tmp:
        for load in loads:
            # The machine is shared: the 1-minute load average when a row starts says how quiet it was.
            busy = os.getloadavg()[0]
            run = run_one(load, Path(tmp))
            lines.append(row(load, run, busy))
            print(lines[-1], flush=True)
    append_results("replies: load × model latency (python -m bench replies)", lines)


if __name__ == "__main__":
    main()
