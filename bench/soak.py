"""Soak: mixed load through sidecar -> bot for SOAK_SECONDS (default 600); memory and descriptors must not grow.

Chat calls from many users and genuinely signed callbacks of five platforms (some re-delivered)
go through the sidecar at SOAK_RATE requests a second; the bot answers through a local stand-in
of every platform API. RSS and open file descriptors of both processes are read from /proc at
two quiet moments: after a warm-up (caches, sessions and pools filled) and at the end. Passes
when RSS grew less than 10 % and no descriptor is left over.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bench.machine import append_results
from loadtest.platforms.base import CallbackBuilder, SignedRequest
from loadtest.platforms.registry import builder
from tests.support.ports import free_port
from tests.support.processes import Process, python_module

PLATFORMS = ("feishu", "dingtalk", "wecom", "slack", "telegram")
USERS = 200
DUPLICATE_EVERY = 20  # every 20th callback is delivered twice, as platforms re-send
MALFORMED_EVERY = 50  # every 50th chat call is not JSON
MAX_RSS_GROWTH = 0.10
# Every platform's "OK" in one body: each adapter reads only the fields its platform sends.
_API_ANSWER = {
    "code": 0, "errcode": 0, "errmsg": "ok", "msg": "ok", "ok": True, "result": {"message_id": 1},
    "tenant_access_token": "t-soak", "expire": 7200, "accessToken": "soak", "expireIn": 7200,
    "access_token": "soak", "expires_in": 7200, "invaliduser": "", "channel": "C1", "ts": "1.0",
}
_SECRETS = {
    "FEISHU_APP_ID": "cli_soak", "FEISHU_APP_SECRET": "soak-secret", "FEISHU_VERIFICATION_TOKEN": "soak-token",
    "FEISHU_ENCRYPT_KEY": "soak-encrypt-key",
    "DINGTALK_APP_KEY": "dingsoak", "DINGTALK_APP_SECRET": "SECsoak-dingtalk-secret",
    "DINGTALK_SESSION_WEBHOOK_HOSTS": "127.0.0.1",
    "WECOM_CORP_ID": "wwsoak", "WECOM_AGENT_ID": "1000002", "WECOM_SECRET": "soak-wecom-secret",
    "WECOM_TOKEN": "soaktoken", "WECOM_ENCODING_AES_KEY": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    "SLACK_SIGNING_SECRET": "soak-slack-signing", "SLACK_BOT_TOKEN": "xoxb-soak",
    "TELEGRAM_BOT_TOKEN": "123:soak", "TELEGRAM_SECRET_TOKEN": "soak-telegram-secret",
}


@dataclass(frozen=True)
class Sample:
    rss_kib: int
    fds: int


def sample(pid: int) -> Sample:
    """Resident memory and open descriptors of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return Sample(rss, len(os.listdir(f"/proc/{pid}/fd")))


class PlatformAPIs:
    """Every platform's API at once: counts what arrives and answers OK."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        return app

    async def _answer(self, request: web.Request) -> web.Response:
        await request.read()
        self.received[request.path.rsplit("/", 1)[-1]] += 1
        return web.json_response(_API_ANSWER)


class Load:
    """Requests at a fixed rate (bounded in flight); paused for the quiet samples."""

    def __init__(self, http: aiohttp.ClientSession, entry: str, rate: float, env: dict[str, str]) -> None:
        self.http = http
        self.entry = entry
        self.interval = 1.0 / rate
        self.builders: list[CallbackBuilder] = [builder(name, env) for name in PLATFORMS]
        self.statuses: Counter[str] = Counter()
        self.callbacks_accepted = 0
        self._slots = asyncio.Semaphore(256)
        self._tasks: set[asyncio.Task[None]] = set()
        self._count = itertools.count()

    async def run(self, seconds: float) -> None:
        start = time.monotonic()
        for i in itertools.count():
            due = start + i * self.interval
            if due - start >= seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._slots.acquire()
            task = asyncio.create_task(self._one(next(self._count)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.gather(*self._tasks)

    async def _one(self, n: int) -> None:
        try:
            user = n % USERS
            if n % 2:
                await self._chat(n, user)
            else:
                request = self.builders[(n // 2) % len(self.builders)].message(f"soak {n}", f"soak-{user}",
                                                                               f"chat-{user}")
                accepted = await self._post(request, "callback")
                if accepted and (n // 2) % DUPLICATE_EVERY == 0:
                    await self._post(request, "duplicate")
                self.callbacks_accepted += accepted
        finally:
            self._slots.release()

    async def _chat(self, n: int, user: int) -> None:
        body = b"{not json" if n % (2 * MALFORMED_EVERY) == 1 else json.dumps(
            {"message": f"question {n}", "user_id": f"soak-{user}"}).encode()
        # Each user from an address of their own, as the sidecar sees people behind a proxy.
        headers = {"Content-Type": "application/json", "X-Forwarded-For": f"10.0.{user // 250}.{user % 250 + 1}"}
        await self._send("POST", "/api/v1/chat", body, headers, "chat")

    async def _post(self, request: SignedRequest, kind: str) -> bool:
        return await self._send(request.method, request.url_path, request.body, request.headers, kind) == 200

    async def _send(self, method: str, path: str, body: bytes, headers: dict[str, str], kind: str) -> int:
        try:
            async with self.http.request(method, self.entry + path, data=body, headers=headers) as resp:
                await resp.read()
                self.statuses[f"{kind} {resp.status}"] += 1
                return resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.statuses[f"{kind} {type(exc).__name__}"] += 1
            return 0


async def quiet(http: aiohttp.ClientSession, bot: str, timeout: float = 60.0) -> None:
    """Wait until the bot has nothing in flight and nothing queued, so two samples compare like with like."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(bot + "/metrics") as resp:
            text = await resp.text()
        values = {(s.name, s.labels.get("queue", "")): s.value
                  for family in text_string_to_metric_families(text) for s in family.samples}
        if values.get(("bot_requests_in_flight", ""), 1) <= 1 and values.get(("bot_queue_depth", "inbound"), 1) == 0:
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"the bot did not go quiet within {timeout:g}s")


async def soak(seconds: float, rate: float, workdir: Path) -> list[str]:
    apis = PlatformAPIs()
    runner = web.AppRunner(apis.app(), access_log=None)
    await runner.setup()
    api_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", api_port).start()
    api_base = f"http://127.0.0.1:{api_port}"
    bot_port, sidecar_port, admin_port = free_port(), free_port(), free_port()
    platform_env = {**_SECRETS, **{f"{name.upper()}_API_BASE": api_base for name in PLATFORMS}}
    bot_env = {**platform_env, "BOT_PORT": str(bot_port), "BOT_DATA_DIR": str(workdir / "data"),
               "BOT_LOG_FILE": str(workdir / "bot.json")}
    sidecar_env = {"SIDECAR_PORT": str(sidecar_port), "SIDECAR_ADMIN_PORT": str(admin_port),
                   "SIDECAR_UPSTREAM": f"http://127.0.0.1:{bot_port}", "SIDECAR_LOG_FILE": str(workdir / "sidecar.json")}
    bot_url, entry = f"http://127.0.0.1:{bot_port}", f"http://127.0.0.1:{sidecar_port}"
    bot = Process("soak-bot", python_module("bot"), bot_env, workdir)
    sidecar: Process | None = None
    try:
        await asyncio.to_thread(bot.wait_http, bot_url + "/ready")
        sidecar = Process("soak-sidecar", python_module("sidecar"), sidecar_env, workdir)
        await asyncio.to_thread(sidecar.wait_http, f"http://127.0.0.1:{admin_port}/sidecar/ready")
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            load = Load(http, entry, rate, platform_env)
            warm_up = min(60.0, seconds / 5)
            await load.run(warm_up)
            await quiet(http, bot_url)
            first = {"bot": sample(bot.pid), "sidecar": sample(sidecar.pid)}
            began = time.monotonic()
            await load.run(seconds - warm_up)
            elapsed = time.monotonic() - began
            await quiet(http, bot_url)
            last = {"bot": sample(bot.pid), "sidecar": sample(sidecar.pid)}
    finally:
        if sidecar is not None:
            sidecar.stop()
        bot.stop()
        await runner.cleanup()
    return report(seconds, rate, warm_up, elapsed, first, last, load, apis)


def report(seconds: float, rate: float, warm_up: float, elapsed: float, first: dict[str, Sample],
           last: dict[str, Sample], load: Load, apis: PlatformAPIs) -> list[str]:
    lines = [
        f"Sidecar (default rules, memory) -> bot (full telemetry, SQLite queue, built-in model), {seconds:g} s at "
        f"{rate:g} req/s: half chat calls from {USERS} users, half signed callbacks of {', '.join(PLATFORMS)} "
        f"(every {DUPLICATE_EVERY}th re-delivered). Samples after {warm_up:g} s of warm-up and at the end "
        f"({elapsed:.0f} s apart), each once the bot is idle.",
        "",
        "| process | RSS start MiB | RSS end MiB | growth | FDs start | FDs end |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for name in ("bot", "sidecar"):
        a, b = first[name], last[name]
        growth = (b.rss_kib - a.rss_kib) / a.rss_kib
        lines.append(f"| {name} | {a.rss_kib / 1024:.1f} | {b.rss_kib / 1024:.1f} | {growth:+.1%} | {a.fds} | {b.fds} |")
        ok = growth < MAX_RSS_GROWTH and b.fds <= a.fds
        verdicts.append(f"- {name}: **{'PASS' if ok else 'FAIL'}** (RSS growth < {MAX_RSS_GROWTH:.0%}, no FD growth)")
    replies = sum(apis.received[name] for name in ("reply", "sendBySession", "send", "chat.postMessage",
                                                   "sendMessage"))
    lines += ["", *verdicts, "",
              "Answers: " + ", ".join(f"{key} × {n}" for key, n in sorted(load.statuses.items())) + ".",
              f"Callbacks accepted: {load.callbacks_accepted}; replies the platforms received: {replies}."]
    return lines


def main() -> None:
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    rate = float(os.environ.get("SOAK_RATE", "40"))
    with tempfile.TemporaryDirectory() as tmp:
        lines = asyncio.run(soak(seconds, rate, Path(tmp)))
    append_results(f"soak: {seconds:g} s of mixed load", lines)


if __name__ == "__main__":
    main()
