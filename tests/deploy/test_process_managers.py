"""systemd units and the Supervisor program file run the same two processes the same way."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

from monitoring.slo import load_slo
from tests.support.processes import ROOT
from tests.support.services import require_binary

UNITS = ROOT / "deploy" / "systemd"
SUPERVISOR = ROOT / "deploy" / "supervisor" / "botwatch.conf"
VENV_PYTHON = "/opt/botwatch/.venv/bin/python"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / f"botwatch-{name}.service", encoding="utf-8")
    return parser


@pytest.mark.parametrize("name", ["bot", "sidecar"])
def test_systemd_accepts_the_unit(name: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` also wants ExecStart to exist, so it points at this venv here."""
    text = (UNITS / f"botwatch-{name}.service").read_text(encoding="utf-8")
    local = tmp_path / f"botwatch-{name}.service"
    local.write_text(text.replace(VENV_PYTHON, str(ROOT / ".venv" / "bin" / "python"))
                     .replace("WorkingDirectory=/opt/botwatch", f"WorkingDirectory={ROOT}"), encoding="utf-8")
    result = subprocess.run([require_binary("systemd-analyze"), "verify", str(local)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr and "ignoring" not in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("name", ["bot", "sidecar"])
def test_units_run_the_module_with_its_memory_limit(name: str) -> None:
    service = unit(name)["Service"]
    assert service["ExecStart"] == f"{VENV_PYTHON} -m {name}"
    assert service["KillSignal"] == "SIGTERM" and service["User"] == "botwatch"
    assert service["MemoryMax"] == f"{load_slo().resources.memory_limit_mib[name]}M"
    # Longer than the bot's 10 s drain, so systemd never kills a draining process.
    assert int(service["TimeoutStopSec"]) > 10


def test_the_sidecar_unit_starts_after_the_bot() -> None:
    assert "botwatch-bot.service" in unit("sidecar")["Unit"]["After"]


def test_supervisor_runs_both_programs_like_the_units() -> None:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read(SUPERVISOR, encoding="utf-8")
    assert parser["group:botwatch"]["programs"] == "botwatch-bot,botwatch-sidecar"
    for name in ("bot", "sidecar"):
        program = parser[f"program:botwatch-{name}"]
        assert program["command"] == f"{VENV_PYTHON} -m {name}"
        assert program["stopsignal"] == "TERM" and int(program["stopwaitsecs"]) > 10
        assert program["user"] == "botwatch"
        env = unit(name)["Service"].get("Environment", "")
        log_file = f"/var/log/botwatch/{name}.log"
        assert log_file in program["environment"] and log_file in env
    assert int(parser["program:botwatch-bot"]["priority"]) < int(parser["program:botwatch-sidecar"]["priority"])
