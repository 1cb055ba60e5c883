"""`python -m monitoring.setup_elk`. Elasticsearch and Kibana cannot run here, so only what can be
checked without them is: what it installs is the committed files, and an unreachable cluster gives
one clear line and a failing exit code, never a traceback or a password."""

from __future__ import annotations

import json
import subprocess

from monitoring.setup_elk import NAME, Payloads
from tests.support.ports import free_port
from tests.support.processes import ROOT, python_module


def test_it_installs_the_committed_policy_template_and_saved_objects() -> None:
    payloads = Payloads.load()
    policy = json.loads((ROOT / "elasticsearch" / "ilm-policy.json").read_text(encoding="utf-8"))
    assert payloads.ilm_policy == policy["policy"]
    assert payloads.index_template["template"]["settings"]["index.lifecycle.name"] == NAME
    assert payloads.saved_objects == (ROOT / "kibana" / "saved-objects.ndjson").read_bytes()


def test_an_unreachable_cluster_fails_with_one_clear_line_and_no_secret() -> None:
    closed = f"http://elastic:hunter2-secret@127.0.0.1:{free_port()}"
    result = subprocess.run(
        [*python_module("monitoring.setup_elk"), "--elasticsearch", closed, "--kibana", closed, "--timeout", "1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={"ELASTIC_PASSWORD": "hunter2-secret", "PATH": ""},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("setup-elk: Elasticsearch at http://127.0.0.1:"), result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr + result.stdout


def test_waiting_shows_progress_and_the_wait_is_bounded() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [*python_module("monitoring.setup_elk"), "--elasticsearch", closed, "--kibana", closed, "--wait", "3"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={"PATH": ""},
    )
    assert result.returncode == 1
    progress = [line for line in result.stdout.splitlines() if "waiting for Elasticsearch" in line]
    assert progress and "of 3 s" in progress[-1], result.stdout
    assert "Traceback" not in result.stderr


def test_help_shows_the_defaults() -> None:
    result = subprocess.run(
        [*python_module("monitoring.setup_elk"), "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0
    assert "--wait" in result.stdout and "default: 300" in result.stdout
