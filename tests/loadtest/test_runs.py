"""Gated Locust runs against real sidecar and bot processes: the CI gate passes honestly, a slowed model fails it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.loadtest.stack import StartBot, StartStack
from tests.support.ports import free_port
from tests.support.processes import ROOT, Process, python_module

pytestmark = pytest.mark.slow


def run_loadtest(
    *args: str, results: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "loadtest", *args, "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, **(env or {})},
    )


def only_run(results: Path) -> Path:
    (run,) = results.iterdir()
    return run


def chat_requests_counted_by(base: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith("bot_requests_total{") and 'route="/api/v1/chat"' in line
    )


@pytest.fixture
def slow_model(tmp_path: Path) -> Iterator[str]:
    """A model that takes 600 ms per answer: the deliberately broken target."""
    port = free_port()
    proc = Process(f"slow-model-{port}", python_module("tests.support.fake_model", str(port), "0.6"), {}, tmp_path)
    proc.wait_http(f"http://127.0.0.1:{port}/v1/models")
    yield f"http://127.0.0.1:{port}/v1"
    proc.stop()


@pytest.fixture
def platforms_on(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every platform's settings (the bot and the generator share them), their APIs served locally."""
    port = free_port()
    api = Process(f"platform-apis-{port}", python_module("tests.loadtest.fake_platforms", str(port)), {}, tmp_path)
    base = f"http://127.0.0.1:{port}"
    api.wait_http(base + "/_calls")
    yield {
        "FEISHU_APP_ID": "cli_load", "FEISHU_APP_SECRET": "fs-secret", "FEISHU_VERIFICATION_TOKEN": "fs-token",
        "FEISHU_ENCRYPT_KEY": "fs-encrypt-key", "FEISHU_API_BASE": base,
        "DINGTALK_APP_KEY": "dingload", "DINGTALK_APP_SECRET": "ding-secret", "DINGTALK_API_BASE": base,
        "DINGTALK_SESSION_WEBHOOK_HOSTS": "127.0.0.1",
        "WECOM_CORP_ID": "wwload", "WECOM_AGENT_ID": "1000002", "WECOM_SECRET": "wc-secret", "WECOM_TOKEN": "wc-token",
        "WECOM_ENCODING_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "WECOM_API_BASE": base,
        "QQ_APP_ID": "102000", "QQ_APP_SECRET": "qq-secret-for-load", "QQ_API_BASE": base,
        "QQ_TOKEN_URL": base + "/app/getAppAccessToken",
        "SLACK_SIGNING_SECRET": "slack-secret", "SLACK_BOT_TOKEN": "xoxb-load", "SLACK_API_BASE": base,
        "TELEGRAM_BOT_TOKEN": "123:load", "TELEGRAM_SECRET_TOKEN": "tg-secret_1", "TELEGRAM_API_BASE": base,
    }
    api.stop()


def test_the_ci_gate_holds_the_slo_and_the_metrics_tell_the_truth(start_stack: StartStack, tmp_path: Path) -> None:
    stack = start_stack()
    result = run_loadtest("smoke", *stack.loadtest_args(), "--duration", "30", results=tmp_path / "results")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.splitlines()[-1].startswith("PASS: ")
    assert re.search(r"^truth check passed \(6 checks: sidecar requests, sidecar 429s, bot requests, ", out, re.M)

    run = only_run(tmp_path / "results")
    summary = json.loads((run / "summary.json").read_text())
    served = summary["figures"]["served"]
    assert served >= 30 * 50  # the floor held over the whole run
    # Independently of the truth check: the bot counted exactly what the generator says it served.
    assert chat_requests_counted_by(stack.bot) == served
    assert (run / "locust_stats.csv").read_text().startswith("Type,Name")
    assert "<html" in (run / "report.html").read_text().lower()


def test_sidecar_429s_are_counted_apart_and_every_counter_still_matches(
    start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack(chat_limit=60)  # 100 req/s offered: about 40 % refused
    result = run_loadtest("smoke", *stack.loadtest_args(), "--duration", "10", results=tmp_path / "results")
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads((only_run(tmp_path / "results") / "summary.json").read_text())["figures"]
    assert figures["rejected"] > 200 and figures["errors"] == 0
    assert "truth check passed" in result.stdout
    # Passing, but not silently: the share the rate limits refused is on its own line.
    assert re.search(r"^WARNING: \d+ of \d+ requests \(\d+\.\d%\) refused by the sidecar's rate limits",
                     result.stdout, re.M), result.stdout


def test_a_model_slowed_to_600_ms_fails_the_gate_with_a_one_line_reason(
    start_stack: StartStack, slow_model: str, tmp_path: Path
) -> None:
    stack = start_stack({"MODEL_ENDPOINT": slow_model})
    result = run_loadtest("smoke", *stack.loadtest_args(), "--duration", "10", results=tmp_path / "results")
    assert result.returncode == 1, result.stdout + result.stderr
    reason = result.stdout.splitlines()[-1]
    match = re.fullmatch(r"FAIL: P99 (\d+\.\d{3}) ms >= 500 ms", reason)
    assert match, reason
    assert float(match.group(1)) >= 600
    # The metrics were honest about the slowness, so only the latency gate broke.
    assert "truth check passed" in result.stdout


def test_the_step_profile_prints_the_knee_and_draws_rate_against_latency(
    start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack()
    result = run_loadtest(
        "step", *stack.loadtest_args(), "--rate", "50", "--step-rate", "50", "--step-seconds", "3", "--max-rate", "150",
        results=tmp_path / "results",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # A burst on a busy machine can cross the default chat limits: the share refused is then named.
    assert re.search(r"^knee: \d+ req/s \(offered 150; P99 \d+\.\d ms, errors 0\.00%"
                     r"(, \d+\.\d% refused by rate limits)?\); no step broke a gate", result.stdout, re.M), result.stdout
    run = only_run(tmp_path / "results")
    steps = json.loads((run / "summary.json").read_text())["steps"]
    assert [s["offered_rps"] for s in steps] == [50, 100, 150]
    assert (run / "step.png").read_bytes()[:4] == b"\x89PNG"


def test_the_soak_profile_reports_the_bots_memory_and_open_files(start_bot: StartBot, tmp_path: Path) -> None:
    _, base = start_bot()
    result = run_loadtest("soak", "--host", base, "--duration", "5", results=tmp_path / "results")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        r"^bot resources: start RSS \d+\.\d MiB, \d+ open files; end RSS \d+\.\d MiB, \d+ open files$",
        result.stdout, re.M,
    )


def test_signed_callbacks_of_every_platform_join_the_gated_run(
    start_stack: StartStack, platforms_on: dict[str, str], tmp_path: Path
) -> None:
    # Each simulated DingTalk conversation posts about one message a second, past the 20 a minute a real
    # robot may send into one conversation: the bot would rightly hold replies back (not late, shaped).
    stack = start_stack({**platforms_on, "DINGTALK_OUTBOUND_LIMIT": "600/minute"})
    replies = platforms_on["SLACK_API_BASE"] + "/_replies"
    result = run_loadtest("smoke", *stack.loadtest_args(), "--duration", "15", "--weights", "chat=4",
                          "--replies", replies, results=tmp_path / "results", env=platforms_on)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every callback's reply reached the platform stand-in, timed from the callback's posting.
    match = re.search(r"^replies: (\d+) of (\d+) answered, 100\.00% within 10 s \(objective 99 % within 10 s\)",
                      result.stdout, re.M)
    assert match and match.group(1) == match.group(2) and int(match.group(1)) > 100, result.stdout
    reply_summary = json.loads((only_run(tmp_path / "results") / "summary.json").read_text())["replies"]
    assert reply_summary["passed"] is True and reply_summary["p99_s"] < 10
    assert "users: ChatUser, FeishuUser, DingtalkUser, WecomUser, QqUser, SlackUser, TelegramUser;" in result.stdout
    for route in ("/feishu/event", "/dingtalk/callback", "/wecom/callback", "/qq/callback", "/slack/events",
                  "/telegram/webhook"):
        assert f"bot 2xx on {route}" in result.stdout
    assert "bot duplicates" in result.stdout
    with urllib.request.urlopen(platforms_on["SLACK_API_BASE"] + "/_calls", timeout=5) as resp:
        calls = json.loads(resp.read())
    # The bot answered through each platform's API: Feishu, DingTalk, WeCom, QQ, Slack, Telegram.
    assert {"open-apis", "robot", "cgi-bin", "v2", "api", "bot123:load"} <= set(calls)
