"""`python -m bot` as an operator starts it: every bad setting stops it at once, named, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import ROOT

SECRET = "pw-Zq81xx"


def run_bot(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Start the bot; a setting it wrongly accepts shows as a timeout (it went on to serve)."""
    full_env = {**os.environ, "BOT_PORT": str(free_port()), "BOT_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(
        [sys.executable, "-m", "bot"], env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=20,
        check=False,
    )


def run_sidecar(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SIDECAR_PORT": str(free_port()), "SIDECAR_ADMIN_PORT": str(free_port()), **env}
    return subprocess.run(
        [sys.executable, "-m", "sidecar"], env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=20,
        check=False,
    )


def a_file(tmp_path: Path) -> str:
    path = tmp_path / "not-a-dir"
    path.write_text("")
    return str(path)


BAD_SETTINGS = {
    "redis scheme": ({"REDIS_URL": f"http://:{SECRET}@127.0.0.1:6379/0"}, "REDIS_URL"),
    "redis no scheme": ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL"),
    "model not a url": ({"MODEL_ENDPOINT": "localhost:8000/v1"}, "MODEL_ENDPOINT"),
    "model not http": ({"MODEL_ENDPOINT": "ftp://models.example/v1"}, "MODEL_ENDPOINT"),
    "model no host": ({"MODEL_ENDPOINT": "http:///v1"}, "MODEL_ENDPOINT"),
    "data dir is a file": (a_file, "BOT_DATA_DIR"),
    "log file dir missing": ({"BOT_LOG_FILE": "/nonexistent-dir/bot.log"}, "BOT_LOG_FILE"),
}


@pytest.mark.parametrize(("bad", "named"), BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_a_bad_setting_stops_the_bot_naming_the_variable(bad: object, named: str, tmp_path: Path) -> None:
    env = bad if isinstance(bad, dict) else {"BOT_DATA_DIR": bad(tmp_path)}  # type: ignore[operator]
    result = run_bot(env, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert named in result.stderr
    assert "Traceback" not in output and len(output.splitlines()) <= 2, output
    assert SECRET not in output


def test_the_data_dir_must_be_a_directory_that_can_be_created(tmp_path: Path) -> None:
    from bot.errors import ConfigError
    from bot.settings import check_paths, load_settings

    with pytest.raises(ConfigError, match="BOT_DATA_DIR.*not a directory"):
        check_paths(load_settings({"BOT_DATA_DIR": a_file(tmp_path)}))
    with pytest.raises(ConfigError, match="BOT_DATA_DIR"):
        check_paths(load_settings({"BOT_DATA_DIR": "/proc/botwatch-data"}))
    check_paths(load_settings({"BOT_DATA_DIR": str(tmp_path / "new" / "data")}))
    assert (tmp_path / "new" / "data").is_dir()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", f"memcached://:{SECRET}@h:1"])
def test_a_bad_sidecar_redis_url_stops_the_sidecar_naming_it(url: str) -> None:
    result = run_sidecar({"SIDECAR_REDIS_URL": url})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "SIDECAR_REDIS_URL" in result.stderr
    assert "Traceback" not in output and SECRET not in output


def test_help_describes_the_commands_and_starts_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "dlq" in result.stdout
    assert "Server ready" not in result.stdout + result.stderr
    dlq_help = subprocess.run(
        [sys.executable, "-m", "bot", "dlq", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=20
    )
    assert dlq_help.returncode == 0 and "replay" in dlq_help.stdout


def test_an_unknown_command_is_a_usage_error_not_a_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "srve"], cwd=ROOT, capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr
