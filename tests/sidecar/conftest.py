"""Fixtures for sidecar tests: real `python -m sidecar` processes in front of real upstreams."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.sidecar.recording_upstream import RecordingUpstream
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.raw_http import Answer, exchange


@dataclass
class Running:
    """A started server: its process and base URL (and for a sidecar, its admin URL)."""

    process: Process
    url: str
    port: int
    admin: str = ""


def fetch(url: str, *, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None,
          timeout: float = 10.0) -> Answer:
    """One request on a fresh connection; any status comes back as an Answer, a hang raises."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return exchange(f"{parts.scheme}://{parts.netloc}", method, target, body, headers, timeout)


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes or goes quiet; for malformed-input tests."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def metric(base_url: str, name: str, **labels: str) -> float:
    """A sample's value from a process's /metrics (the sidecar's admin port, or the bot); 0 when absent."""
    text = fetch(base_url + "/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def launch_upstream(workdir: Path, name: str = "stable", port: int | None = None) -> Running:
    """Start the test upstream (`tests.sidecar.upstream_server`) under a name it echoes back."""
    port = port or free_port()
    proc = Process(f"upstream-{name}-{port}", python_module("tests.sidecar.upstream_server", str(port), name), {}, workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(url + "/health")
    except Exception:
        proc.stop()
        raise
    return Running(proc, url, port)


def launch_sidecar(
    workdir: Path, upstream: str, env: dict[str, str] | None = None, *, rules: str | None = None, name: str = "sidecar"
) -> Running:
    """Start `python -m sidecar` in front of `upstream` (no rate limits unless `rules` YAML is given)."""
    port, admin = free_port(), free_port()
    full_env = {
        "SIDECAR_PORT": str(port),
        "SIDECAR_ADMIN_PORT": str(admin),
        "SIDECAR_UPSTREAM": upstream,
        "SIDECAR_RATE_LIMITS": "",
        "SIDECAR_PROBE_INTERVAL": "0.2",
    }
    if rules is not None:
        path = workdir / f"{name}-{port}-rules.yaml"
        path.write_text(rules)
        full_env["SIDECAR_RATE_LIMITS"] = str(path)
    full_env.update(env or {})
    proc = Process(f"{name}-{port}", python_module("sidecar"), full_env, workdir)
    admin_url = f"http://127.0.0.1:{admin}"
    try:
        proc.wait_http(admin_url + "/sidecar/health")
    except Exception:
        proc.stop()
        raise
    return Running(proc, f"http://127.0.0.1:{port}", port, admin_url)


@pytest.fixture
def bot_on_port(tmp_path: Path) -> Iterator[Callable[[int], Process]]:
    """Start `python -m bot` on a given port (the shared `start_bot` always picks a new one),
    so a test can bring a killed bot back where the sidecar expects it."""
    started: list[Process] = []

    def start(port: int) -> Process:
        env = {"BOT_PORT": str(port), "BOT_DATA_DIR": str(tmp_path / f"bot-{port}")}
        proc = Process(f"bot-{port}-{len(started)}", python_module("bot"), env, tmp_path)
        started.append(proc)
        proc.wait_http(f"http://127.0.0.1:{port}/health")
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def start_upstream(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(name: str = "stable", port: int | None = None) -> Running:
        started.append(launch_upstream(tmp_path, name, port))
        return started[-1]

    yield start
    for running in started:
        running.process.stop()


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(upstream: str, env: dict[str, str] | None = None, *, rules: str | None = None, name: str = "sidecar") -> Running:
        started.append(launch_sidecar(tmp_path, upstream, env, rules=rules, name=name))
        return started[-1]

    yield start
    for running in started:
        running.process.stop()


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecordingUpstream]:
    """A raw upstream that records the bytes each request arrives as, shared by one module's tests."""
    upstream = RecordingUpstream()
    yield upstream
    upstream.stop()
