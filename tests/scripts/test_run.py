"""`make run` (scripts/run.sh) as an operator meets it: loud failures, one instance at a time, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import ROOT, http_ok

SCRIPT = str(ROOT / "scripts" / "run.sh")


def run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "BOT_PORT": str(free_port()), "SIDECAR_PORT": str(free_port()),
        "SIDECAR_ADMIN_PORT": str(free_port()), "RUN_DIR": str(tmp_path / "var"),
        "BOT_DATA_DIR": str(tmp_path / "var"), **extra,
    }


def start(env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        return subprocess.Popen(
            ["bash", SCRIPT], env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def finish(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_running(proc: subprocess.Popen[bytes], out: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while "botwatch is running" not in out.read_text(errors="replace"):
        assert proc.poll() is None, out.read_text(errors="replace")
        assert time.monotonic() < deadline, out.read_text(errors="replace")
        time.sleep(0.1)


def test_a_bad_bot_setting_fails_at_once_with_the_reason_on_the_terminal(tmp_path: Path) -> None:
    out = tmp_path / "terminal.txt"
    started = time.monotonic()
    code = finish(start(run_env(tmp_path, MODEL_ENDPOINT="localhost:8000"), out))
    text = out.read_text(errors="replace")
    assert code != 0, text
    assert "MODEL_ENDPOINT" in text and "botwatch is running" not in text
    assert time.monotonic() - started < 15


def test_a_bad_sidecar_setting_fails_with_the_reason_on_the_terminal(tmp_path: Path) -> None:
    out = tmp_path / "terminal.txt"
    env = run_env(tmp_path, SIDECAR_CANARY_PERCENT="-5")
    code = finish(start(env, out))
    text = out.read_text(errors="replace")
    assert code != 0, text
    assert "SIDECAR_CANARY_PERCENT" in text and "botwatch is running" not in text
    assert not http_ok(f"http://127.0.0.1:{env['BOT_PORT']}/health"), "the bot was left running"


def test_a_second_run_refuses_to_start_over_the_running_one_which_stops_cleanly(tmp_path: Path) -> None:
    env = run_env(tmp_path)
    first_out, second_out = tmp_path / "first.txt", tmp_path / "second.txt"
    first = start(env, first_out)
    try:
        wait_running(first, first_out)
        second_code = finish(start(env, second_out))
        second = second_out.read_text(errors="replace")
        assert second_code != 0, second
        assert "already running" in second and "botwatch is running" not in second
        assert first.poll() is None and http_ok(f"http://127.0.0.1:{env['BOT_PORT']}/health")
        # Ports taken by something else (a previous run left behind) are refused too, naming the port.
        (tmp_path / "var" / "run.pid").unlink()
        third_code = finish(start(env, tmp_path / "third.txt"))
        third = (tmp_path / "third.txt").read_text(errors="replace")
        assert third_code != 0 and f"port {env['BOT_PORT']}" in third and "in use" in third, third
        os.kill(first.pid, signal.SIGTERM)
        assert finish(first) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(5)
    assert not http_ok(f"http://127.0.0.1:{env['BOT_PORT']}/health")
    # One file per process, written once: ECS JSON for Filebeat; the terminal got the same lines.
    var = tmp_path / "var"
    assert sorted(path.name for path in var.glob("*.log")) == ["bot.log", "sidecar.log"]
    assert "Server ready on port" in (var / "bot.log").read_text()
