"""`python -m sidecar` as a process: refuses bad configuration, drains in-flight requests on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.sidecar.conftest import Running, fetch, metric
from tests.support.ports import free_port
from tests.support.processes import ROOT


def run_sidecar(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SIDECAR_PORT": str(free_port()), "SIDECAR_ADMIN_PORT": str(free_port()), **env}
    return subprocess.run(
        [sys.executable, "-m", "sidecar"], env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SIDECAR_UPSTREAM": "https://bot.example/api"}, "SIDECAR_UPSTREAM"),
        ({"SIDECAR_MAX_IN_FLIGHT": "lots"}, "SIDECAR_MAX_IN_FLIGHT"),
        ({"SIDECAR_CANARY_PERCENT": "-5"}, "SIDECAR_CANARY_PERCENT"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_variable(env: dict[str, str], named: str) -> None:
    result = run_sidecar(env)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_broken_rules_file_stops_start_up_naming_the_file(tmp_path: Path) -> None:
    rules = tmp_path / "limits.yaml"
    rules.write_text("rules: [{name: r, key: nobody, limits: [1/second]}]")
    result = run_sidecar({"SIDECAR_RATE_LIMITS": str(rules)})
    assert result.returncode == 2
    assert str(rules) in result.stderr and "key" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_sigterm_lets_requests_in_flight_finish_then_exits_zero(
    start_upstream: Callable[..., Running], start_sidecar: Callable[..., Running]
) -> None:
    sidecar = start_sidecar(start_upstream().url)
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(fetch, sidecar.url + "/slow?seconds=1")
        deadline = time.monotonic() + 5
        while metric(sidecar.admin, "sidecar_requests_in_flight") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sidecar.process.signal(signal.SIGTERM)
        assert slow.result().status == 200
    sidecar.process.popen.wait(10)
    assert sidecar.process.popen.returncode == 0
    assert '"Stopped"' in sidecar.process.output()
