"""`python -m bench` behaves like a command: help, a listing, and a usage error for an unknown suite."""

from __future__ import annotations

import subprocess

from tests.support.processes import ROOT, python_module


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(python_module("bench", *args), cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_help_names_every_suite_and_runs_nothing() -> None:
    result = bench("--help")
    assert result.returncode == 0, result.stderr
    for suite in ("bot", "webhooks", "sidecar", "capacity", "soak"):
        assert suite in result.stdout
    assert "SOAK_SECONDS" in result.stdout
    assert "bench/results.md" in result.stdout


def test_an_unknown_suite_is_a_usage_error_before_anything_runs() -> None:
    result = bench("bott")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "bott" in result.stderr
    assert "Traceback" not in result.stderr
