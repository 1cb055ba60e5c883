"""Bot throughput with full telemetry vs telemetry off, in one run: the cost of being observable."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.machine import append_results
from bench.wrk import WrkResult, run_wrk
from tests.support.ports import free_port
from tests.support.processes import Process, python_module

CHAT_BODY = json.dumps({"message": "hello, how are you?", "user_id": "bench-user"})
DURATION = 10.0
CONNECTIONS = 32


def measure(telemetry: bool, workdir: Path) -> WrkResult:
    port = free_port()
    env = {
        "BOT_PORT": str(port),
        "TELEMETRY_ENABLED": "true" if telemetry else "false",
        "BOT_DATA_DIR": str(workdir / f"data-{port}"),
        # Full telemetry means what production runs: JSON lines to a file as well as stdout.
        "BOT_LOG_FILE": str(workdir / f"bot-{port}.log") if telemetry else "",
    }
    bot = Process(f"bot-{'on' if telemetry else 'off'}", python_module("bot"), env, workdir)
    try:
        base = f"http://127.0.0.1:{port}"
        bot.wait_http(base + "/health")
        run_wrk(base + "/api/v1/chat", duration=2, connections=CONNECTIONS, body=CHAT_BODY)  # warm-up
        return run_wrk(base + "/api/v1/chat", duration=DURATION, connections=CONNECTIONS, body=CHAT_BODY)
    finally:
        bot.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        off = measure(False, workdir)
        on = measure(True, workdir)
        off2 = measure(False, workdir)
    # Telemetry-off is measured before and after, so drift during the run shows up.
    baseline = (off.rps + off2.rps) / 2
    ratio = on.rps / baseline if baseline else 0.0
    lines = [
        f"`POST /api/v1/chat`, built-in model, wrk 1 thread × {CONNECTIONS} connections, {DURATION:g} s each.",
        "",
        "| telemetry | req/s | p50 ms | p99 ms | errors | wrk CPU s |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {r.cpu_s:.1f} |"
          for name, r in (("off", off), ("full", on), ("off (again)", off2))),
        "",
        f"**full telemetry keeps {ratio:.0%} of the telemetry-off throughput** (target ≥ 50 %).",
    ]
    append_results("bot: telemetry cost", lines)


if __name__ == "__main__":
    main()
