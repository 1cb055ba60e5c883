"""`python -m bot` as operators run it: the guides' commands, logs, graceful stop, no leaked secrets."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.processes import Process, python_module

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def post_chat(base: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        base + "/api/v1/chat", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_guides_commands_work_and_are_counted(start_bot: Any, tmp_path: Path) -> None:
    log_file = tmp_path / "bot.log"
    proc, base = start_bot({"BOT_LOG_FILE": str(log_file)})
    head = urllib.request.Request(base + "/health", method="HEAD")
    with urllib.request.urlopen(head, timeout=5) as resp:
        assert resp.status == 200
    status, body = post_chat(base, {"message": "hello"})
    assert status == 200 and "hello" in body["reply"]
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'bot_requests_total{method="HEAD",platform="system",route="/health",status="200"} 1.0' in metrics
    assert 'bot_requests_total{method="POST",platform="api",route="/api/v1/chat",status="200"} 1.0' in metrics
    proc.wait_until(lambda: "Server ready on port" in log_file.read_text(), what="logging readiness")
    assert "Server ready on port" in proc.output()


def test_every_request_line_is_ecs_json_with_trace_ids(start_bot: Any, tmp_path: Path) -> None:
    log_file = tmp_path / "bot.log"
    proc, base = start_bot({"BOT_LOG_FILE": str(log_file)})
    post_chat(base, {"message": "hi"}, {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    post_chat(base, {"message": ""})
    proc.wait_until(lambda: log_file.read_text().count('"bot.access"') >= 3, what="writing access lines")
    access = [line for line in log_lines(log_file) if line["log"]["logger"] == "bot.access"]
    for line in access:
        assert {"@timestamp", "log.level", "message", "ecs.version"} <= set(line)
        assert len(line["trace"]["id"]) == 32 and len(line["span"]["id"]) == 16
        assert line["service"]["name"] == "botwatch-bot"
        assert isinstance(line["event"]["duration"], int)
        assert line["client"]["ip"] == "127.0.0.1"
    propagated = [line for line in access if line["trace"]["id"] == TRACE_ID]
    assert len(propagated) == 1 and propagated[0]["http"]["response"]["status_code"] == 200
    assert any(line["http"]["response"]["status_code"] == 400 for line in access)


def test_a_client_hanging_up_mid_body_is_a_499_at_info_level_not_a_server_error(
    start_bot: Any, tmp_path: Path
) -> None:
    log_file = tmp_path / "bot.log"
    proc, base = start_bot({"BOT_LOG_FILE": str(log_file)})
    port = int(base.rsplit(":", 1)[1])
    head = b"POST /api/v1/chat HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
    # Directly (a declared length never sent), and as a proxy refusing an oversized chunked body leaves it.
    for request in (head + b"Content-Length: 1000\r\n\r\n{\"message\":",
                    head + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"mes\r\n"):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request)
            proc.wait_until(lambda: _in_flight(base) >= 2, what="reading the body")
    # The access lines, not the info lines saying why: access lines are handed over in batches.
    proc.wait_until(lambda: log_file.read_text().count('"POST /api/v1/chat 499"') >= 2, what="logging both requests")
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'bot_requests_total{method="POST",platform="api",route="/api/v1/chat",status="499"} 2.0' in metrics
    assert 'status="500"' not in metrics and "bot_errors_total{" not in metrics
    lines = log_lines(log_file)
    # Logstash raises alert_level on error lines; a caller leaving is not one.
    assert [line for line in lines if line["log.level"] in ("error", "warning")] == []
    assert "Traceback" not in proc.output() and "stack_trace" not in log_file.read_text()
    hangups = [line for line in lines if line["message"] == "POST /api/v1/chat 499"]
    assert len(hangups) == 2 and all(line["log.level"] == "info" for line in hangups)


def test_an_oversized_chunked_post_the_sidecar_refuses_never_reaches_the_bot(start_bot: Any, tmp_path: Path) -> None:
    """The sidecar buffers request bodies before it opens an upstream exchange, so a body it refuses
    for its size costs the bot nothing: no request, no 499, no 500."""
    log_file = tmp_path / "bot.log"
    _, base = start_bot({"BOT_LOG_FILE": str(log_file)})
    port, admin = free_port(), free_port()
    sidecar = Process("sidecar", python_module("sidecar"), {
        "SIDECAR_PORT": str(port), "SIDECAR_ADMIN_PORT": str(admin), "SIDECAR_UPSTREAM": base,
        "SIDECAR_MAX_BODY_BYTES": "2048", "SIDECAR_RATE_LIMITS": "",
    }, tmp_path)
    try:
        sidecar.wait_http(f"http://127.0.0.1:{admin}/sidecar/ready")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /api/v1/chat HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            sock.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")  # held by the sidecar, not streamed on
            sock.settimeout(10)
            sock.sendall(b"800\r\n" + b"x" * 2048 + b"\r\n")  # over the sidecar's limit
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    finally:
        sidecar.stop()
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'route="/api/v1/chat"' not in metrics.split("# HELP bot_requests_total")[1].split("# HELP")[0]
    assert 'status="500"' not in metrics and 'status="499"' not in metrics
    assert not [line for line in log_lines(log_file) if line["log.level"] in ("error", "warning")]


def test_health_checks_and_scrapes_are_sampled_in_the_access_log_not_written_each_time(
    start_bot: Any, tmp_path: Path
) -> None:
    log_file = tmp_path / "bot.log"
    proc, base = start_bot({"BOT_LOG_FILE": str(log_file)})
    for _ in range(20):
        urllib.request.urlopen(base + "/health", timeout=5).close()
        urllib.request.urlopen(base + "/metrics", timeout=5).close()
    post_chat(base, {"message": "hi"})
    proc.wait_until(lambda: "POST /api/v1/chat 200" in log_file.read_text(), what="logging the chat")
    access = [line["message"] for line in log_lines(log_file) if line["log"]["logger"] == "bot.access"]
    assert sum(m.startswith("GET /health 200") for m in access) == 1, access
    assert sum(m.startswith("GET /metrics 200") for m in access) == 1, access
    # Failures of the same routes are always written.
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(base + "/metrics", method="DELETE"), timeout=5)
    proc.wait_until(lambda: "DELETE /metrics 405" in log_file.read_text(), what="logging the refused scrape")


def test_start_up_is_one_summary_line_naming_what_runs(start_bot: Any, tmp_path: Path) -> None:
    log_file = tmp_path / "bot.log"
    proc, _ = start_bot({
        "BOT_LOG_FILE": str(log_file), "TELEGRAM_BOT_TOKEN": "123:abc", "TELEGRAM_SECRET_TOKEN": "s3cret-token",
    })
    proc.wait_until(lambda: "Server ready on port" in log_file.read_text(), what="logging readiness")
    start_up = [line for line in log_lines(log_file) if line["log"]["logger"] == "bot"]
    assert len(start_up) == 1, start_up
    summary = start_up[0]["message"]
    for part in ("Server ready on port", "model: built-in", "queue: SQLite", "Redis: off",
                 "telegram (POST /telegram/webhook)"):
        assert part in summary, summary
    assert "s3cret" not in summary and "123:abc" not in summary


def test_on_a_terminal_lines_are_readable_while_the_file_keeps_ecs_json(tmp_path: Path) -> None:
    import os
    import pty

    from tests.support.ports import free_port
    from tests.support.processes import ROOT, python_module

    log_file, port = tmp_path / "bot.log", free_port()
    main, terminal = pty.openpty()
    proc = subprocess.Popen(
        python_module("bot"), cwd=ROOT, stdout=terminal, stderr=terminal, start_new_session=True,
        env={**os.environ, "BOT_PORT": str(port), "BOT_LOG_FILE": str(log_file), "BOT_DATA_DIR": str(tmp_path)},
    )
    os.close(terminal)
    try:
        seen = b""
        while b"Server ready on port" not in seen:
            assert proc.poll() is None, seen
            seen += os.read(main, 4096)
        post_chat(f"http://127.0.0.1:{port}", {"message": "hi"})
        while b"POST /api/v1/chat 200" not in seen:
            seen += os.read(main, 4096)
    finally:
        proc.terminate()
        proc.wait(15)
        os.close(main)
    shown = [line for line in seen.decode().splitlines() if line.strip()]
    assert shown and not any(line.lstrip().startswith("{") for line in shown), shown
    assert any(" INFO " in line and "Server ready on port" in line for line in shown), shown
    assert all(line.startswith("{") for line in log_file.read_text().splitlines())


def test_sigterm_finishes_in_flight_requests_then_exits_zero(tmp_path: Path) -> None:
    model_port, bot_port = free_port(), free_port()
    model = Process("model", python_module("tests.support.fake_model", str(model_port), "1.0"), {}, tmp_path)
    bot = Process(
        "bot", python_module("bot"),
        {"BOT_PORT": str(bot_port), "MODEL_ENDPOINT": f"http://127.0.0.1:{model_port}/v1",
         "BOT_DATA_DIR": str(tmp_path / "data")},
        tmp_path,
    )
    try:
        model.wait_until(lambda: _listening(model_port), what="listening")
        base = f"http://127.0.0.1:{bot_port}"
        bot.wait_http(base + "/health")
        result: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: result.update(zip(("status", "body"), post_chat(base, {"message": "slow"}))))
        worker.start()
        bot.wait_until(lambda: _in_flight(base) >= 2, what="holding the slow request")
        bot.signal(signal.SIGTERM)
        worker.join(15)
        assert result["status"] == 200 and "slow" in result["body"]["reply"]
        assert bot.popen.wait(15) == 0
        assert not _listening(bot_port)
    finally:
        bot.stop()
        model.stop()


def test_no_secret_reaches_a_log_a_response_or_a_metric(start_bot: Any, tmp_path: Path) -> None:
    secrets = {"BOT_API_KEY": "bot-key-Zq81", "MODEL_API_KEY": "sk-model-Jx42"}
    dead_model = f"http://127.0.0.1:{free_port()}/v1"
    log_file = tmp_path / "bot.log"
    proc, base = start_bot({**secrets, "MODEL_ENDPOINT": dead_model, "BOT_LOG_FILE": str(log_file),
                            "MODEL_MAX_RETRIES": "0"})
    seen: list[str] = []
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer bot-key-Zq81"}):
        status, body = post_chat(base, {"message": "x"}, headers)
        seen.append(json.dumps(body))
    assert [json.loads(s).get("error", {}).get("code") for s in seen] == ["unauthorized", "unauthorized", "model_unavailable"]
    for path in ("/metrics", "/ready", "/api/health"):
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                seen.append(resp.read().decode())
        except urllib.error.HTTPError as exc:
            seen.append(exc.read().decode())
    proc.stop()
    seen += [log_file.read_text(), proc.output()]
    for secret in secrets.values():
        for text in seen:
            assert secret not in text


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _in_flight(base: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=2) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("bot_requests_in_flight "):
                return float(line.split()[1])
    return 0.0


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib would send loopback requests through a proxy configured in the environment.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
