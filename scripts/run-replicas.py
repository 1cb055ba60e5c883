#!/usr/bin/env python3
"""`make run REPLICAS=2`: several bots, each with its own sidecar, on one Redis, behind nginx.

What a two-pod Kubernetes Deployment does, on one machine: every replica is a bot and the
sidecar in front of it; a replica that dies (even by SIGKILL) is started again after a second,
as a kubelet restarts a container; nginx (deploy/nginx/botwatch-replicas.conf) spreads traffic
over the sidecars and skips one that fails. Redis is REDIS_URL when set, otherwise a redis-server
started here with the persistence the queue needs (appendonly yes, maxmemory-policy noeviction).

The state file (<state-dir>/replicas.json) names every port and the current pid of each process,
so an operator (or a test) can look at, or kill, one replica. Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx" / "botwatch-replicas.conf"
RESTART_DELAY = 1.0  # doubled after each crash in a row (up to MAX_RESTART_DELAY), like a kubelet's back-off
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 10.0  # seconds up that reset the back-off


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)
    if not path:
        sys.exit(f"run-replicas: {name} is not installed (apt-get install {'nginx-light' if name == 'nginx' else name})")
    return path


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return 200 <= resp.status < 300
    except OSError:
        return False


def redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Child:
    """One supervised process: started again when it exits while we are running."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    crashes: int = 0  # in a row, without STABLE_AFTER seconds up between them
    died_at: float | None = None
    started_at: float = 0.0  # wall clock, so it compares with nginx's $msec

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(self.argv, env={**os.environ, **self.env}, cwd=ROOT, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.died_at = None
        self.started_at = time.time()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def exited(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


@dataclass
class Replicas:
    count: int
    state_dir: Path
    listen: int
    redis_url: str | None
    fixed_ports: bool
    children: list[Child] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    stopping: bool = False

    def port(self, name: str, fixed: int) -> int:
        self.ports[name] = fixed if self.fixed_ports else free_port()
        return self.ports[name]

    def plan(self) -> None:
        py = sys.executable
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.redis_url:
            port = self.port("redis", 6390)
            data = self.state_dir / "redis"
            data.mkdir(exist_ok=True)
            # The queue is the only copy of an accepted message: every write is logged (appendonly),
            # and Redis refuses writes rather than evicting a key when memory runs out.
            self.children.append(Child("redis", [
                find_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
                "--save", "",
            ], {}, self.state_dir / "redis.log"))
            self.redis_url = f"redis://127.0.0.1:{port}/0"
        for i in range(1, self.count + 1):
            bot = self.port(f"bot-{i}", 18789 + i)
            public = self.port(f"sidecar-{i}", 8080 + i)
            admin = self.port(f"sidecar-admin-{i}", 9901 + i)
            self.children.append(Child(f"bot-{i}", [py, "-m", "bot"], {
                "BOT_PORT": str(bot), "BOT_DATA_DIR": str(self.state_dir / f"bot-{i}"),
                "BOT_LOG_FILE": str(self.state_dir / f"bot-{i}.json.log"), "REDIS_URL": self.redis_url,
                "OTEL_SERVICE_NAME": "botwatch-bot",
            }, self.state_dir / f"bot-{i}.log", f"http://127.0.0.1:{bot}/health"))
            self.children.append(Child(f"sidecar-{i}", [py, "-m", "sidecar"], {
                "SIDECAR_PORT": str(public), "SIDECAR_ADMIN_PORT": str(admin),
                "SIDECAR_UPSTREAM": f"http://127.0.0.1:{bot}", "SIDECAR_REDIS_URL": self.redis_url,
            }, self.state_dir / f"sidecar-{i}.log", f"http://127.0.0.1:{admin}/sidecar/health"))
        self.ports["nginx"] = self.listen
        self.children.append(Child("nginx", self.nginx_argv(), {}, self.state_dir / "nginx.log",
                                   f"http://127.0.0.1:{self.listen}/health"))

    def nginx_argv(self) -> list[str]:
        conf = NGINX_CONF.read_text(encoding="utf-8")
        template = re.search(r"^(\s*)server 127\.0\.0\.1:\d+ (max_fails=.*;)$", conf, flags=re.M)
        assert template, "deploy/nginx/botwatch-replicas.conf lost its upstream server line"
        indent, options = template.group(1), template.group(2)
        servers = "\n".join(f"{indent}server 127.0.0.1:{self.ports[f'sidecar-{i}']} {options}"
                            for i in range(1, self.count + 1))
        conf = re.sub(r"^\s*server 127\.0\.0\.1:\d+ max_fails=.*;$\n?", "", conf, flags=re.M)
        conf = conf.replace("    keepalive 64;", servers + "\n    keepalive 64;", 1)
        conf = conf.replace("listen 127.0.0.1:8000;", f"listen 127.0.0.1:{self.listen};")
        conf = conf.replace("/var/log/nginx/botwatch-replicas.log", str(self.state_dir / "nginx-access.log"))
        site = self.state_dir / "botwatch-replicas.conf"
        site.write_text(conf, encoding="utf-8")
        main = self.state_dir / "nginx.conf"
        main.write_text(
            f"pid {self.state_dir}/nginx.pid;\nerror_log {self.state_dir}/nginx-error.log;\n"
            f"events {{}}\nhttp {{\n  include {site};\n}}\n", encoding="utf-8")
        return [find_binary("nginx"), "-p", str(self.state_dir), "-e", str(self.state_dir / "nginx-error.log"),
                "-c", str(main), "-g", "daemon off;"]

    def write_state(self) -> None:
        state = {
            "redis_url": self.redis_url,
            "entry": f"http://127.0.0.1:{self.listen}",
            "ports": self.ports,
            "pids": {c.name: c.pid for c in self.children},
            "restarts": {c.name: c.restarts for c in self.children},
            "started_at": {c.name: c.started_at for c in self.children},
            "supervisor": os.getpid(),
        }
        tmp = self.state_dir / "replicas.json.tmp"
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        tmp.replace(self.state_dir / "replicas.json")

    def wait_ready(self, child: Child, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping:
            if child.exited() is not None:
                sys.exit(f"run-replicas: {child.name} exited with {child.exited()}; see {child.log}")
            if child.name == "redis" and redis_pings(self.ports["redis"]):
                return
            if child.ready_url and answers(child.ready_url):
                return
            time.sleep(0.05)
        if not self.stopping:
            sys.exit(f"run-replicas: {child.name} not ready after {timeout}s; see {child.log}")

    def run(self) -> None:
        for child in self.children:
            if self.stopping:
                return
            child.start()
            self.wait_ready(child)
            self.write_state()
        print(f"\nbotwatch: {self.count} replicas behind nginx (Ctrl-C stops everything)\n"
              f"  entry point   http://127.0.0.1:{self.listen}\n"
              f"  redis         {self.redis_url.split('@')[-1] if self.redis_url else ''}\n"
              f"  state         {self.state_dir}/replicas.json (ports, pids), logs beside it\n", flush=True)
        while not self.stopping:
            for child in self.children:
                code = child.exited()
                if code is None or self.stopping:
                    continue
                now = time.monotonic()
                if child.died_at is None:
                    child.died_at = now
                    child.crashes = 1 if time.time() - child.started_at >= STABLE_AFTER else child.crashes + 1
                    print(f"run-replicas: {child.name} (pid {child.pid}) exited with {code}; restarting in "
                          f"{self.restart_delay(child):.0f}s", flush=True)
                elif now - child.died_at >= self.restart_delay(child):
                    child.restarts += 1
                    child.start()
                    self.write_state()
            time.sleep(0.05)

    @staticmethod
    def restart_delay(child: Child) -> float:
        return min(RESTART_DELAY * 2 ** (child.crashes - 1), MAX_RESTART_DELAY)

    def stop(self, *_: object) -> None:
        if self.stopping:
            return
        self.stopping = True
        # nginx first, so nothing new arrives; then sidecars and bots drain in parallel; Redis last.
        order = [c for c in self.children if c.name == "nginx"]
        order += [c for c in self.children if c.name not in ("nginx", "redis")]
        for child in order:
            if child.popen and child.popen.poll() is None:
                child.popen.terminate()
        for child in order:
            child.stop()
        for child in self.children:
            if child.name == "redis":
                child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS") or 2))
    parser.add_argument("--listen", type=int, default=int(os.environ.get("NGINX_PORT") or 8000),
                        help="nginx's port on 127.0.0.1 (default 8000)")
    parser.add_argument("--state-dir", type=Path, default=ROOT / "var" / "replicas")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or None)
    parser.add_argument("--ephemeral-ports", action="store_true",
                        help="free ports for every bot, sidecar and Redis instead of 18790+, 8081+, 9902+, 6390")
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    replicas = Replicas(args.replicas, args.state_dir.resolve(), args.listen, args.redis_url,
                        fixed_ports=not args.ephemeral_ports)
    signal.signal(signal.SIGINT, replicas.stop)
    signal.signal(signal.SIGTERM, replicas.stop)
    replicas.plan()
    try:
        replicas.run()
    finally:
        replicas.stop()


if __name__ == "__main__":
    main()
