"""Sidecar overhead in one run: the bot direct, via the sidecar, via nginx (upstream keepalive), and via
the floor of a Python proxy (bench.relay: bytes passed, nothing else)."""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.machine import append_results
from bench.wrk import WrkResult, run_wrk
from tests.support.ports import free_port
from tests.support.processes import Process, python_module

# Targets from the sidecar's issue: added latency at 100 QPS and throughput against nginx.
MAX_ADDED_P50_MS = 0.15
MAX_ADDED_P99_MS = 1.0
MIN_THROUGHPUT_VS_NGINX = 1.0

# Other work on a small shared machine drifts over seconds: short runs, interleaved over several
# rounds in alternating order, and the median round per target.
ROUNDS = 5
FIXED_RATE_SECONDS = 6.0
SATURATION_SECONDS = 5.0
CONNECTIONS = 50
PATH = "/health"
FLOOR = "via Python relay (floor)"

# The one in-memory rule the target requires: it matches every benchmark request and never refuses.
_RULES = """\
rules:
  - name: bench_client
    routes: [/health]
    key: client_ip
    limits: [1000000/second]
    strategy: fixed-window
"""

_NGINX = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log combined buffer=64k;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream bot {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


@dataclass
class Target:
    name: str
    url: str
    pid: int | None = None  # the proxy process, whose CPU is the cost of the hop (None for the bot direct)


@dataclass
class Run:
    result: WrkResult
    proxy_cpu_s: float


def wake_up_penalty(samples: int = 200) -> tuple[float, float]:
    """Median µs of one small Python step (a trace id) run warm, and run right after a 10 ms sleep.

    At ~100 QPS every request finds a process that slept for about 10 ms. On a virtual machine
    whose idle vCPUs are handed to others, the caches and TLBs are cold by then and each step costs
    many times its warm price: this is the multiplier the low-rate latency of any Python code pays.
    """
    clock = time.perf_counter_ns

    def step() -> str:
        return "%056x" % random.getrandbits(224)

    warm, cold = [], []
    for _ in range(samples):
        time.sleep(0.01)
        started = clock()
        step()
        first = clock()
        step()
        cold.append(first - started)
        warm.append(clock() - first)
    return statistics.median(warm) / 1e3, statistics.median(cold) / 1e3


def _cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (nginx's worker), from /proc."""
    ticks = 100.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    total = 0.0
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _start_nginx(workdir: Path, upstream_port: int) -> tuple[Process, str]:
    return _start_nginx_with(_NGINX, workdir, upstream_port)


def _start_nginx_with(template: str, workdir: Path, upstream_port: int) -> tuple[Process, str]:
    """Start nginx from a config template ({dir}, {upstream}, {port}); returns it and its base URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed: `make bench` installs it when run as root (apt-get install nginx-light)")
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(template.format(dir=workdir, upstream=upstream_port, port=port))
    proc = Process("nginx", [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")], {}, workdir)
    base = f"http://127.0.0.1:{port}"
    proc.wait_http(base + PATH)
    return proc, base


def _measure(target: Target, **wrk_args: float) -> Run:
    before = _cpu_seconds(target.pid) if target.pid else 0.0
    result = run_wrk(target.url + PATH, **wrk_args)  # type: ignore[arg-type]
    used = (_cpu_seconds(target.pid) - before) if target.pid else 0.0
    return Run(result, used)


def _interleaved(targets: list[Target], measure: Callable[[Target], Run]) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {t.name: [] for t in targets}
    for round_ in range(ROUNDS):
        for target in targets if round_ % 2 == 0 else list(reversed(targets)):
            runs[target.name].append(measure(target))
    return runs


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-sidecar-"))
    (workdir / "rules.yaml").write_text(_RULES)
    bot_port, sidecar_port, admin_port, relay_port = free_port(), free_port(), free_port(), free_port()
    bot = Process("bot", python_module("bot"), {"BOT_PORT": str(bot_port), "BOT_DATA_DIR": str(workdir / "bot")}, workdir)
    started = [bot]
    try:
        bot.wait_http(f"http://127.0.0.1:{bot_port}/health")
        # The access log goes to stdout, which Process writes to one file (nginx writes one file too).
        sidecar = Process(
            "sidecar", python_module("sidecar"),
            {
                "SIDECAR_PORT": str(sidecar_port), "SIDECAR_ADMIN_PORT": str(admin_port),
                "SIDECAR_UPSTREAM": f"http://127.0.0.1:{bot_port}",
                "SIDECAR_RATE_LIMITS": str(workdir / "rules.yaml"),
            },
            workdir,
        )
        started.append(sidecar)
        sidecar.wait_http(f"http://127.0.0.1:{admin_port}/sidecar/ready")
        nginx, nginx_url = _start_nginx(workdir, bot_port)
        started.append(nginx)
        relay = Process("relay", python_module("bench.relay", str(relay_port), str(bot_port)), {}, workdir)
        started.append(relay)
        relay.wait_http(f"http://127.0.0.1:{relay_port}{PATH}")
        targets = [
            Target("bot direct", f"http://127.0.0.1:{bot_port}"),
            Target("via sidecar", f"http://127.0.0.1:{sidecar_port}", sidecar.pid),
            Target("via nginx", nginx_url, nginx.pid),
            Target(FLOOR, f"http://127.0.0.1:{relay_port}", relay.pid),
        ]
        load_before = os.getloadavg()
        penalty = wake_up_penalty()
        for target in targets:  # warm up connection pools and allocators
            run_wrk(target.url + PATH, duration=2, connections=CONNECTIONS)
        fixed = _interleaved(targets, lambda t: _measure(t, duration=FIXED_RATE_SECONDS, connections=1, delay_ms=10))
        saturated = _interleaved(targets, lambda t: _measure(t, duration=SATURATION_SECONDS, connections=CONNECTIONS))
        _report(fixed, saturated, penalty, (load_before, os.getloadavg()))
    finally:
        for proc in reversed(started):
            proc.stop()


def _load(average: tuple[float, ...]) -> str:
    return " / ".join(f"{value:.2f}" for value in average)


def _median(runs: list[Run], value: Callable[[WrkResult], float]) -> float:
    return statistics.median(value(run.result) for run in runs)


def _added(fixed: dict[str, list[Run]], name: str, value: Callable[[WrkResult], float]) -> float:
    """Median over rounds of (target - bot direct) measured in the same round: drift cancels out."""
    pairs = zip(fixed[name], fixed["bot direct"])
    return statistics.median(value(run.result) - value(base.result) for run, base in pairs)


def _cpu_per_request(runs: list[Run]) -> str:
    requests = sum(run.result.requests for run in runs)
    cpu = sum(run.proxy_cpu_s for run in runs)
    return f"{cpu / requests * 1e6:.0f}" if cpu and requests else "-"


def _report(
    fixed: dict[str, list[Run]], saturated: dict[str, list[Run]], penalty: tuple[float, float],
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> None:
    p50 = {name: _median(runs, lambda r: r.p50_ms) for name, runs in fixed.items()}
    p99 = {name: _median(runs, lambda r: r.p99_ms) for name, runs in fixed.items()}
    qps = {name: _median(runs, lambda r: r.rps) for name, runs in fixed.items()}
    rps = {name: _median(runs, lambda r: r.rps) for name, runs in saturated.items()}
    added50 = {name: _added(fixed, name, lambda r: r.p50_ms) for name in fixed}
    added99 = {name: _added(fixed, name, lambda r: r.p99_ms) for name in fixed}
    ratios = [side.result.rps / ngx.result.rps for side, ngx in zip(saturated["via sidecar"], saturated["via nginx"])]
    direct = "bot direct"
    lines = [
        f"Path `{PATH}`, {ROUNDS} interleaved rounds, medians shown; added latency is the median of per-round "
        f"differences to the bot direct. Fixed rate: wrk, 1 connection, 10 ms delay, {FIXED_RATE_SECONDS:g} s; "
        f"saturation: {CONNECTIONS} connections, {SATURATION_SECONDS:g} s. Sidecar: metrics, ECS access log, one "
        "in-memory rate-limit rule. nginx: 1 worker, upstream keepalive 64, buffered access log. Python relay: "
        "`bench.relay`, the sidecar's runtime passing bytes and nothing else (the floor of a Python proxy). "
        "Proxy CPU: the process's user+system time over the runs ÷ requests, at ~100 QPS and at saturation. "
        f"Command: `python -m bench sidecar`; load average {_load(load[0])} at the start, {_load(load[1])} at the end.",
        "",
        "| target | ~QPS | p50 ms | p99 ms | added p50 ms | added p99 ms | proxy CPU µs/req at ~100 QPS "
        "| saturation req/s (rounds) | errors | proxy CPU µs/req | wrk CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in fixed:
        runs = saturated[name]
        added = "| - | - " if name == direct else f"| {added50[name]:+.3f} | {added99[name]:+.3f} "
        rounds = ", ".join(f"{run.result.rps:.0f}" for run in runs)
        errors = sum(run.result.errors for run in runs + fixed[name])
        wrk_cpu = sum(run.result.cpu_s for run in runs)
        lines.append(
            f"| {name} | {qps[name]:.0f} | {p50[name]:.3f} | {p99[name]:.3f} {added}| {_cpu_per_request(fixed[name])} "
            f"| {rps[name]:.0f} ({rounds}) | {errors} | {_cpu_per_request(runs)} | {wrk_cpu:.1f} |"
        )
    ratio = rps["via sidecar"] / rps["via nginx"] if rps["via nginx"] else 0.0
    side50, side99 = added50["via sidecar"], added99["via sidecar"]
    lines += [
        "",
        f"- sidecar throughput / nginx: **{ratio:.2f}** (target >= {MIN_THROUGHPUT_VS_NGINX}) "
        f"{'PASS' if ratio >= MIN_THROUGHPUT_VS_NGINX else 'MISS'}; per round "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; sidecar / direct {rps['via sidecar'] / rps[direct]:.2f}, "
        f"nginx / direct {rps['via nginx'] / rps[direct]:.2f}",
        f"- sidecar added latency at ~100 QPS: p50 **{side50:+.3f} ms** (target <= {MAX_ADDED_P50_MS}) "
        f"{'PASS' if side50 <= MAX_ADDED_P50_MS else 'MISS'}, p99 **{side99:+.3f} ms** "
        f"(target <= {MAX_ADDED_P99_MS}) {'PASS' if side99 <= MAX_ADDED_P99_MS else 'MISS'}",
        f"- nginx added latency at ~100 QPS: p50 {added50['via nginx']:+.3f} ms, p99 {added99['via nginx']:+.3f} ms",
        f"- Python relay (floor) added latency at ~100 QPS: p50 {added50[FLOOR]:+.3f} ms, p99 {added99[FLOOR]:+.3f} ms; "
        f"its throughput / nginx {rps[FLOOR] / rps['via nginx']:.2f}, CPU at saturation {_cpu_per_request(saturated[FLOOR])} µs/req",
        f"- wake-up penalty: a small Python step (one trace id) takes {penalty[0]:.1f} µs warm and "
        f"{penalty[1]:.1f} µs right after a 10 ms sleep (x{penalty[1] / penalty[0]:.0f}): at ~100 QPS each request "
        "finds the process cold",
    ]
    append_results("Sidecar vs nginx in front of the bot", lines)


if __name__ == "__main__":
    main()
