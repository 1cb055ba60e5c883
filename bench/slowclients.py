"""Slow clients in one run: the sidecar and nginx in front of the same bot, each attacked the same way.

One address (127.0.0.3) holds 1,100 connections that send a request body (or head) a byte a
second, reopening whatever the proxy closes, for 15 s; a normal client (127.0.0.2) sends 10 chat
requests a second on fresh connections meanwhile. The figure that counts is the normal client's
share of 200s (target >= 95 %), printed for both proxies side by side.

nginx is configured to match the sidecar's defaults: request bodies buffered before proxying
(its default), 10 s client_header_timeout, 30 s client_body_timeout (nginx's is an idle timer
between reads, the sidecar's a total deadline), 1 MiB bodies, 256 connections per address
(limit_conn, which nginx applies once a request head is read) and 4,096 in all.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from bench.machine import append_results
from bench.sidecar import _start_nginx_with
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.slow_clients import SlowClients, normal_client, raise_fd_limit

ATTACK_CONNECTIONS = 1100
ATTACK_SECONDS = 15.0
MIN_SHARE_OK = 0.95

_NGINX = """\
worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log crit;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_header_timeout 10s;
    client_body_timeout 30s;
    client_max_body_size 1m;
    limit_conn_zone $binary_remote_addr zone=per_address:10m;
    upstream bot {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=2048;
        limit_conn per_address 256;
        location / {{
            proxy_pass http://bot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def _attack(port: int, mode: str) -> tuple[Counter[int], SlowClients]:
    attack = SlowClients(port, ATTACK_CONNECTIONS, mode)
    attack.start()
    try:
        statuses = normal_client(port, ATTACK_SECONDS)
    finally:
        attack.stop()
    return statuses, attack


def main() -> None:
    limit = raise_fd_limit(ATTACK_CONNECTIONS * 3 + 512)
    workdir = Path(tempfile.mkdtemp(prefix="bench-slowclients-"))
    bot_port, sidecar_port, admin_port = free_port(), free_port(), free_port()
    bot = Process("bot", python_module("bot"), {"BOT_PORT": str(bot_port), "BOT_DATA_DIR": str(workdir / "bot")}, workdir)
    started = [bot]
    rows: list[str] = []
    shares: dict[str, list[float]] = {}
    try:
        bot.wait_http(f"http://127.0.0.1:{bot_port}/health")
        sidecar = Process(
            "sidecar", python_module("sidecar"),
            {"SIDECAR_PORT": str(sidecar_port), "SIDECAR_ADMIN_PORT": str(admin_port),
             "SIDECAR_UPSTREAM": f"http://127.0.0.1:{bot_port}", "SIDECAR_ACCESS_LOG": "false"},
            workdir,
        )
        started.append(sidecar)
        sidecar.wait_http(f"http://127.0.0.1:{admin_port}/sidecar/ready")
        nginx, nginx_url = _start_nginx_with(_NGINX, workdir, bot_port)
        started.append(nginx)
        targets = {"sidecar": sidecar_port, "nginx": int(nginx_url.rsplit(":", 1)[1])}
        for mode in ("body", "head"):
            for name, port in (targets.items() if mode == "body" else reversed(targets.items())):
                statuses, attack = _attack(port, mode)
                total = sum(statuses.values()) or 1
                share = statuses[200] / total
                shares.setdefault(name, []).append(share)
                others = ", ".join(f"{status or 'failed'}: {count}" for status, count in sorted(statuses.items()) if status != 200)
                rows.append(
                    f"| {name} | slow {mode} | {total} | {share:.1%} | {others or '-'} | {attack.peak_open} | "
                    f"{attack.reopened} |"
                )
    finally:
        for proc in reversed(started):
            proc.stop()
    lines = [
        f"One address holds {ATTACK_CONNECTIONS} slow connections (a byte a second, reopened when closed) for "
        f"{ATTACK_SECONDS:g} s while a normal client from another address sends 10 chat requests/s on fresh "
        f"connections. Descriptor limit {limit}. Command: `python -m bench slowclients`.",
        "",
        "| proxy | attack | normal requests | 200s | other answers | attacker connections held (peak) | attacker reopenings |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        *(f"- {name}: normal client's 200s {min(values):.1%} at worst (target >= {MIN_SHARE_OK:.0%})"
          for name, values in shares.items()),
    ]
    append_results("Slow clients: sidecar vs nginx", lines)
