"""Webhook ACK latency: signed and encrypted callbacks from every platform while the model takes 300 ms."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from bench.machine import append_results
from bench.wrk import run_wrk, write_requests
from loadtest.platforms.registry import PLATFORMS, builder
from loadtest.scrape import LabelFilter, histogram_quantile, scrape
from tests.support.ports import free_port
from tests.support.processes import Process, python_module

TARGET_RATE = 700  # callbacks a second offered, so that >= 500 arrive (the issue asks for 500)
TARGET_ACK_P99_MS = 100.0
CONNECTIONS = 24
DURATION = 20.0
MODEL_LATENCY = "0.3"


def platform_env(api_base: str) -> dict[str, str]:
    """Every platform on, with its APIs served by one local stand-in."""
    return {
        "FEISHU_APP_ID": "cli_bench", "FEISHU_APP_SECRET": "fs-secret", "FEISHU_VERIFICATION_TOKEN": "fs-token",
        "FEISHU_ENCRYPT_KEY": "fs-encrypt-key", "FEISHU_API_BASE": api_base,
        "DINGTALK_APP_KEY": "dingbench", "DINGTALK_APP_SECRET": "ding-secret", "DINGTALK_API_BASE": api_base,
        "DINGTALK_SESSION_WEBHOOK_HOSTS": "127.0.0.1",
        "WECOM_CORP_ID": "wwbench", "WECOM_AGENT_ID": "1000002", "WECOM_SECRET": "wc-secret",
        "WECOM_TOKEN": "wc-token", "WECOM_ENCODING_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "WECOM_API_BASE": api_base,
        "QQ_APP_ID": "102000", "QQ_APP_SECRET": "qq-secret-for-bench", "QQ_API_BASE": api_base,
        "QQ_TOKEN_URL": api_base + "/app/getAppAccessToken",
        "SLACK_SIGNING_SECRET": "slack-secret", "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_BASE": api_base,
        "TELEGRAM_BOT_TOKEN": "123:bench", "TELEGRAM_SECRET_TOKEN": "tg-secret_1", "TELEGRAM_API_BASE": api_base,
    }


def build_requests(env: dict[str, str], count: int) -> list[tuple[str, str, dict[str, str], bytes]]:
    """Distinct callbacks (fresh ids, so none is a duplicate), round-robin across platforms."""
    builders = [builder(name, env) for name in PLATFORMS]
    built = []
    for i, make in zip(range(count), itertools.cycle(builders)):
        request = make.message(f"benchmark message {i}", user=f"user-{i % 500}", chat=f"chat-{i % 50}")
        built.append((request.method, request.url_path, request.headers, request.body))
    return built


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        api_port, model_port, bot_port = free_port(), free_port(), free_port()
        api = Process("platform-apis", python_module("tests.loadtest.fake_platforms", str(api_port)), {}, workdir)
        model = Process("model", python_module("tests.support.fake_model", str(model_port), MODEL_LATENCY), {}, workdir)
        env = platform_env(f"http://127.0.0.1:{api_port}")
        bot = Process("bot", python_module("bot"), {
            **env, "BOT_PORT": str(bot_port), "BOT_DATA_DIR": str(workdir / "data"),
            "MODEL_ENDPOINT": f"http://127.0.0.1:{model_port}/v1", "BOT_LOG_FILE": str(workdir / "bot.log"),
        }, workdir)
        try:
            api.wait_http(f"http://127.0.0.1:{api_port}/_calls")
            model.wait_http(f"http://127.0.0.1:{model_port}/v1/models")
            base = f"http://127.0.0.1:{bot_port}"
            bot.wait_http(base + "/health")
            requests_file = workdir / "callbacks.req"
            sent = write_requests(requests_file, build_requests(env, int(TARGET_RATE * DURATION * 1.5)))
            # Each connection waits this long after an answer: about TARGET_RATE callbacks a second in all.
            delay_ms = max(0, int(CONNECTIONS * 1000 / TARGET_RATE))
            result = run_wrk(base + "/", duration=DURATION, connections=CONNECTIONS, delay_ms=delay_ms,
                             requests_file=requests_file)
            snapshot = scrape(base + "/metrics")
            depth = snapshot.total("bot_queue_depth", lambda labels: labels.get("queue") == "inbound")
        finally:
            bot.stop()
            model.stop()
            api.stop()
    per_platform = []
    for name in PLATFORMS:
        buckets = snapshot.buckets("bot_ack_duration_seconds", _on_platform(name))
        if buckets:
            per_platform.append(f"{name} {histogram_quantile(0.99, buckets) * 1000:.1f}")
    ok = result.errors == 0 and result.rps >= 500 and result.p99_ms < TARGET_ACK_P99_MS
    lines = [
        f"Signed (and, for Feishu and WeCom, encrypted) callbacks round-robin over {len(PLATFORMS)} platforms, "
        f"{sent} distinct events prepared; model answers in {float(MODEL_LATENCY) * 1000:.0f} ms; "
        f"wrk 1 thread × {CONNECTIONS} connections, {DURATION:g} s.",
        "",
        "| callbacks/s | ACK p50 ms | ACK p90 ms | ACK p99 ms | errors | wrk CPU s |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {result.rps:,.0f} | {result.p50_ms:.2f} | {result.p90_ms:.2f} | {result.p99_ms:.2f} | "
        f"{result.errors} | {result.cpu_s:.1f} |",
        "",
        f"Bot's own ACK p99 by platform (ms, from bot_ack_duration_seconds): {', '.join(per_platform)}.",
        f"Messages still queued when the run ended: {depth:.0f} (replies keep flowing after the ACKs).",
        "",
        f"**{'PASS' if ok else 'FAIL'}**: target ≥ 500 callbacks/s with ACK p99 < {TARGET_ACK_P99_MS:g} ms, no errors.",
    ]
    append_results("webhooks: ACK under load", lines)


if __name__ == "__main__":
    main()


def _on_platform(name: str) -> LabelFilter:
    return lambda labels: labels.get("platform") == name
