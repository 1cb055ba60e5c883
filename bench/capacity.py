"""Capacity: the highest rate sidecar -> bot (full telemetry) holds with P99 under the SLO threshold and no errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.machine import append_results
from bench.wrk import WrkResult, run_wrk
from loadtest.slo import load_gates
from tests.support.ports import free_port
from tests.support.processes import Process, python_module

# The target is 80 times the guides' throughput floor (4,000 req/s with slo.yaml's 50).
TARGET_FLOOR_MULTIPLE = 80
CONNECTIONS = (4, 8, 16, 32, 64, 128, 256)
SECONDS = 8.0
# Every connection count is measured in each round; the figure is what all rounds sustained.
ROUNDS = 2
CHAT_BODY = json.dumps({"message": "hello, how are you?", "user_id": "capacity"})
# One real rule on the chat route that this load never reaches, so the limiter's cost is paid.
RULES = """\
rules:
  - name: chat_total
    routes: [/api/v1/chat]
    key: route
    limits: [1000000/second]
    strategy: fixed-window
"""
PROFILE_SECONDS = 8
# Which part of the stack a sampled frame belongs to, by where its code lives (first match wins).
_KINDS = (
    ("telemetry/logs.py", "logging"), ("logging/", "logging"), ("ecs_logging", "logging"), ("json/", "logging"),
    ("prometheus_client", "metrics"), ("opentelemetry", "tracing"),
    ("aiohttp/", "HTTP and event loop"), ("asyncio", "HTTP and event loop"), ("uvloop", "HTTP and event loop"),
    ("bot/", "botwatch code"), ("sidecar/", "botwatch code"),
)


@dataclass(frozen=True)
class Point:
    connections: int
    wrk: WrkResult
    bot_cores: float
    sidecar_cores: float


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def measure(url: str, connections: int, bot: Process, sidecar: Process) -> Point:
    bot_before, sidecar_before = _cpu(bot.pid), _cpu(sidecar.pid)
    result = run_wrk(url, duration=SECONDS, connections=connections, body=CHAT_BODY)
    return Point(
        connections, result,
        (_cpu(bot.pid) - bot_before) / result.duration_s,
        (_cpu(sidecar.pid) - sidecar_before) / result.duration_s,
    )


def start_stack(workdir: Path) -> tuple[Process, Process, str, str]:
    """The bot as `make run` runs it (metrics, spans, ECS logs to stdout and a file) behind the sidecar."""
    bot_port, port, admin = free_port(), free_port(), free_port()
    bot = Process("bot", python_module("bot"), {
        "BOT_PORT": str(bot_port), "BOT_DATA_DIR": str(workdir / "bot"), "BOT_LOG_FILE": str(workdir / "bot.log"),
    }, workdir)
    bot.wait_http(f"http://127.0.0.1:{bot_port}/health")
    (workdir / "rules.yaml").write_text(RULES)
    sidecar = Process("sidecar", python_module("sidecar"), {
        "SIDECAR_PORT": str(port), "SIDECAR_ADMIN_PORT": str(admin),
        "SIDECAR_UPSTREAM": f"http://127.0.0.1:{bot_port}", "SIDECAR_RATE_LIMITS": str(workdir / "rules.yaml"),
        "SIDECAR_LOG_FILE": str(workdir / "sidecar.log"),
    }, workdir)
    try:
        sidecar.wait_http(f"http://127.0.0.1:{admin}/sidecar/ready")
    except (RuntimeError, TimeoutError):
        bot.stop()
        raise
    return bot, sidecar, f"http://127.0.0.1:{port}/api/v1/chat", f"http://127.0.0.1:{bot_port}/api/v1/chat"


def where_time_goes(pid: int, workdir: Path, name: str, top: int = 8) -> list[str]:
    """Sample a process with py-spy for a few seconds; the functions holding the most samples, self time."""
    spy = str(Path(sys.executable).parent / "py-spy")
    spy = spy if Path(spy).exists() else (shutil.which("py-spy") or spy)
    if not Path(spy).exists():
        return [f"- {name}: py-spy not installed, no profile"]
    out = workdir / f"{name}.raw"
    subprocess.run(  # noqa: S603
        [spy, "record", "-p", str(pid), "-d", str(PROFILE_SECONDS), "-r", "200", "--nonblocking",
         "--format", "raw", "-o", str(out)],
        capture_output=True, check=False, timeout=PROFILE_SECONDS + 30,
    )
    own: Counter[str] = Counter()
    for line in out.read_text().splitlines() if out.exists() else []:
        stack, _, count = line.rpartition(" ")
        own[stack.split(";")[-1]] += int(count)
    total = sum(own.values())
    if not total:
        return [f"- {name}: py-spy took no samples (needs ptrace: run as root)"]
    kinds: Counter[str] = Counter()
    for frame, n in own.items():
        kinds[next((kind for marker, kind in _KINDS if marker in frame), "other")] += n
    split = ", ".join(f"{kind} {n / total:.0%}" for kind, n in kinds.most_common())
    lines = [f"- {name} ({total} samples) by kind: {split}; most self time:"]
    lines += [f"  - {n / total:5.1%} `{frame}`" for frame, n in own.most_common(top)]
    return lines


def holds(point: Point, threshold_ms: float) -> bool:
    return not point.wrk.errors and point.wrk.p99_ms < threshold_ms


def sweep(url: str, bot: Process, sidecar: Process, threshold_ms: float) -> list[Point]:
    """One pass up the connection counts, stopping at the first that breaks: past it, more only queue."""
    points = []
    for connections in CONNECTIONS:
        points.append(measure(url, connections, bot, sidecar))
        if not holds(points[-1], threshold_ms):
            break
    return points


def main() -> None:
    gates = load_gates()
    target = TARGET_FLOOR_MULTIPLE * gates.min_rps
    threshold_ms = gates.latency_threshold_s * 1000
    workdir = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    bot, sidecar, url, direct_url = start_stack(workdir)
    by_connections: dict[int, list[Point]] = {}
    profile: list[str] = []
    direct: Point | None = None
    best: int | None = None
    try:
        run_wrk(url, duration=2, connections=32, body=CHAT_BODY)  # warm-up: pools, sessions, allocator
        for _ in range(ROUNDS):
            for point in sweep(url, bot, sidecar, threshold_ms):
                by_connections.setdefault(point.connections, []).append(point)
        best = capacity_point(by_connections, threshold_ms)
        connections = best or CONNECTIONS[0]
        # The bot alone at the same concurrency tells whether the sidecar or the bot sets the limit.
        direct = measure(direct_url, connections, bot, sidecar)
        if best is None or sustained(by_connections[best]) < target:
            with ThreadPoolExecutor(3) as pool:  # profile while wrk holds that load
                wrk_run = pool.submit(run_wrk, url, duration=PROFILE_SECONDS + 2, connections=connections,
                                      body=CHAT_BODY)
                bot_profile = pool.submit(where_time_goes, bot.pid, workdir, "bot")
                sidecar_profile = pool.submit(where_time_goes, sidecar.pid, workdir, "sidecar")
                wrk_run.result()
                profile = bot_profile.result() + sidecar_profile.result()
    finally:
        sidecar.stop()
        bot.stop()
    report(by_connections, best, direct, target, threshold_ms, profile)


def sustained(points: list[Point]) -> float:
    """The rate every round reached: the lowest of them, so one lucky round cannot raise the figure."""
    return min(p.wrk.rps for p in points)


def capacity_point(by_connections: dict[int, list[Point]], threshold_ms: float) -> int | None:
    """The connection count whose sustained rate is highest among those that held in every round."""
    held = {
        c: pts for c, pts in by_connections.items()
        if len(pts) == ROUNDS and all(holds(p, threshold_ms) for p in pts)
    }
    return max(held, key=lambda c: sustained(held[c]), default=None)


def _each(values: Iterable[str]) -> str:
    return " / ".join(values)


def _mean(values: Iterable[float]) -> float:
    listed = list(values)
    return sum(listed) / len(listed)


def report(
    by_connections: dict[int, list[Point]], best: int | None, direct: Point | None, target: float,
    threshold_ms: float, profile: list[str],
) -> None:
    lines = [
        f"`POST /api/v1/chat` through the sidecar (one in-memory rate-limit rule) to the bot with full telemetry"
        f" (metrics, spans, ECS logs to stdout and a file), built-in model; wrk 1 thread, {SECONDS:g} s per point,"
        f" {ROUNDS} rounds up the connection counts, on the same machine as the servers.",
        "",
        "| connections | req/s per round | p99 ms per round | errors | holds | wrk cores | sidecar cores | bot cores |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    rows = [(str(c), pts) for c, pts in sorted(by_connections.items())]
    if direct is not None:
        rows.append((f"{direct.connections} (bot direct)", [direct]))
    for name, pts in rows:
        lines.append(
            f"| {name} | {_each(f'{p.wrk.rps:,.0f}' for p in pts)} | {_each(f'{p.wrk.p99_ms:.1f}' for p in pts)}"
            f" | {sum(p.wrk.errors for p in pts)} | {'yes' if all(holds(p, threshold_ms) for p in pts) else 'no'}"
            f" | {_mean(p.wrk.cpu_s / p.wrk.duration_s for p in pts):.2f} | {_mean(p.sidecar_cores for p in pts):.2f}"
            f" | {_mean(p.bot_cores for p in pts):.2f} |"
        )
    lines.append("")
    if best is None:
        lines.append(f"**capacity: none** — no point held P99 < {threshold_ms:g} ms with zero errors in every round.")
    else:
        points = by_connections[best]
        rate = sustained(points)
        wrk_cores = max(p.wrk.cpu_s / p.wrk.duration_s for p in points)
        verdict = "meets" if rate >= target else "MISSES"
        lines.append(
            f"**capacity: {rate:,.0f} req/s** at {best} connections (the lower of {ROUNDS} rounds; P99 at most"
            f" {max(p.wrk.p99_ms for p in points):.1f} ms, 0 errors); {verdict} the {target:,.0f} req/s target"
            f" ({rate / target:.0%} of it). The generator (wrk) used at most {wrk_cores:.2f} cores of 2 for it."
        )
    if profile:
        lines += ["", f"Where the time goes at that load (py-spy, {PROFILE_SECONDS} s, self time):", *profile]
    append_results("capacity: sidecar -> bot, full telemetry", lines)


if __name__ == "__main__":
    main()
