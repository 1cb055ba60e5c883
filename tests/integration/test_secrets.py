"""Known secrets through every path of a real bot and sidecar: none in a log line, a response, a metric or dlq output.

Five platforms with their credentials, the chat API key, the model key, a Redis password, an
alert robot's token and signing secret, and the tokens the platforms hand out, all in play: good
and bad callbacks and chat requests through the sidecar, a failing model, replies a platform
refuses or cannot be reached for (dead letters), alerts forwarded and refused, `python -m bot
dlq`, and finally Redis going away. Each secret is looked for as itself and URL-encoded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web

from tests.bot.platforms.dingtalk import conftest as dingtalk
from tests.bot.platforms.feishu import conftest as feishu
from tests.bot.platforms.slack import conftest as slack
from tests.bot.platforms.telegram import conftest as telegram
from tests.bot.platforms.wecom import conftest as wecom
from tests.support.bots import eventually, metric, run_dlq
from tests.support.fake_model import FakeModel
from tests.support.fake_platform import FakePlatformAPI, Recorded
from tests.support.ports import free_port
from tests.support.processes import Process, python_module
from tests.support.redis_server import RedisServer
from tests.support.services import require_binary

BOT_API_KEY = "bw-chat-key-5f2c9a71d3e8"
MODEL_API_KEY = "sk-model-key-8e41b07c22f5"
REDIS_PASSWORD = "redis-pass-3b9d6e1f40aa"
ALERTS_ROBOT_TOKEN = "alert-robot-token-7c1e5a9b"
ALERTS_SECRET = "SECalert0a9b8c7d6e5f4a3b2c1d"
ALERTS_RECEIVER_TOKEN = "am-receiver-token-4d2f86"
SESSION_CREDENTIAL = "session-credential-91ab3c"  # a DingTalk session webhook's own secret
SECRETS = (
    BOT_API_KEY, MODEL_API_KEY, REDIS_PASSWORD, ALERTS_ROBOT_TOKEN, ALERTS_SECRET, ALERTS_RECEIVER_TOKEN,
    SESSION_CREDENTIAL, *feishu.SECRETS, *dingtalk.SECRETS, *telegram.SECRETS, *wecom.SECRETS, *slack.SECRETS,
)
ROBOT_PATH = "/robot/send"
GONE_CHAT = 666  # Telegram answers "chat not found" for it


@dataclass
class Seen:
    """Everything an operator or a client could read: responses, metrics, tool output."""

    texts: list[str] = field(default_factory=list)

    async def call(self, http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> int:
        async with http.request(method, url, **kwargs) as resp:
            body = await resp.read()
            self.texts.append(f"{resp.status} {dict(resp.headers)} {body.decode(errors='replace')}")
            return resp.status


class Platforms(FakePlatformAPI):
    """Feishu, DingTalk (with its custom robot), WeCom and Telegram on one local server, as documented."""

    def __init__(self) -> None:
        super().__init__()
        self.robot_codes: list[int] = []
        self.on("POST", feishu.TOKEN_PATH, {"code": 0, "msg": "ok", "tenant_access_token": feishu.TENANT_TOKEN,
                                            "expire": 7200})
        self.on("POST", feishu.reply_path("om_ok"), {"code": 0, "msg": "ok", "data": {"message_id": "om_answer"}})
        self.on("POST", feishu.reply_path("om_gone"), lambda _req: web.json_response(
            {"code": 230002, "msg": "Bot/User can NOT be out of the chat."}, status=400))
        self.on("POST", dingtalk.TOKEN_PATH, {"accessToken": dingtalk.ACCESS_TOKEN, "expireIn": 7200})
        self.on("POST", dingtalk.SESSION_PATH, self._session)
        self.on("POST", ROBOT_PATH, self._robot)
        self.on("GET", "/cgi-bin/gettoken", wecom.token_answer(wecom.ACCESS_TOKEN))
        self.on("POST", "/cgi-bin/message/send", {"errcode": 0, "errmsg": "ok", "invaliduser": ""})
        self.on("POST", telegram.SEND_MESSAGE, self._telegram)

    def _session(self, request: Recorded) -> web.Response:
        gone = request.query.get("chat") == "gone"
        return web.json_response({"errcode": 400013 if gone else 0, "errmsg": "group not found" if gone else "ok"})

    def _robot(self, _request: Recorded) -> web.Response:
        code = self.robot_codes.pop(0) if self.robot_codes else 0
        return web.json_response({"errcode": code, "errmsg": "ok" if code == 0 else "sign not match"})

    def _telegram(self, request: Recorded) -> web.Response:
        if request.json()["chat_id"] == GONE_CHAT:
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                                     status=400)
        return web.json_response({"ok": True, "result": {"message_id": 1}})


def session_webhook(base: str, chat: str) -> dict[str, Any]:
    live = dingtalk.live_session(base, SESSION_CREDENTIAL)
    live["sessionWebhook"] += f"&chat={chat}"
    return live


def telegram_update(update_id: int, chat_id: int) -> bytes:
    return orjson.dumps(telegram.recorded("private_text.json", update_id=update_id, chat={"id": chat_id,
                                                                                           "type": "private"}))


async def callbacks(seen: Seen, http: aiohttp.ClientSession, entry: str, api_base: str) -> None:
    """Good and forged callbacks for every platform; the good ones are answered or dead-lettered."""
    async def post(path: str, body: bytes, headers: dict[str, str]) -> int:
        return await seen.call(http, "POST", entry + path, data=body, headers=headers)

    for message_id in ("om_ok", "om_gone"):
        body, headers = feishu.encrypted_callback(feishu.text_event(f"ev-{message_id}", message_id=message_id))
        assert await post("/feishu/event", body, headers) == 200
    body, _ = feishu.encrypted_callback(feishu.text_event("ev-forged"))
    assert await post("/feishu/event", body, feishu.sign(body, key="not-the-encrypt-key")) == 401
    for chat in ("ok", "gone"):
        message = dingtalk.payload("text_group", msgId=f"dt-{chat}", **session_webhook(api_base, chat))
        assert await post("/dingtalk/callback", *dingtalk.callback(message)) == 200
    forged = dingtalk.callback(dingtalk.payload("text_group", msgId="dt-forged"), secret="SECnot-the-app-secret")
    assert await post("/dingtalk/callback", *forged) == 401
    for update_id, chat in ((501, 42), (502, GONE_CHAT)):
        assert await post("/telegram/webhook", telegram_update(update_id, chat), telegram.HEADERS) == 200
    wrong_token = {**telegram.HEADERS, "X-Telegram-Bot-Api-Secret-Token": telegram.SECRET_TOKEN[:-1]}
    assert await post("/telegram/webhook", telegram_update(503, 42), wrong_token) == 401
    encrypt, query = wecom.encrypted(wecom.recorded("text.xml", MsgId="9001"))
    assert await post(wecom.callback_url(query), wecom.envelope(encrypt), {"Content-Type": "text/xml"}) == 200
    query["msg_signature"] = "0" * 40
    assert await post(wecom.callback_url(query), wecom.envelope(encrypt), {"Content-Type": "text/xml"}) == 401
    # Slack's API is unreachable here: its reply is retried, then dead-lettered.
    body = slack.recorded("message_im.json", event_id="Ev0SECRET")
    assert await post("/slack/events", body, slack.signed(body)) == 200
    assert await post("/slack/events", body, slack.signed(body, timestamp=int(time.time()) - 3600)) == 401


async def chat(seen: Seen, http: aiohttp.ClientSession, entry: str, model: FakeModel) -> None:
    """The chat API with the right, a wrong, a truncated and no key; bad bodies; then a failing model."""
    url = entry + "/api/v1/chat"
    good = {"Authorization": f"Bearer {BOT_API_KEY}"}
    assert await seen.call(http, "POST", url, json={"message": "hello", "user_id": "u-1"}, headers=good) == 200
    for headers in ({"Authorization": f"Bearer {BOT_API_KEY[:-1]}"}, {"Authorization": BOT_API_KEY}, {}):
        assert await seen.call(http, "POST", url, json={"message": "hi"}, headers=headers) == 401
    assert await seen.call(http, "POST", url, data=b"{not json", headers={**good, "Content-Type": "application/json"}) == 400
    assert await seen.call(http, "POST", url, data=b"hello", headers={**good, "Content-Type": "text/plain"}) == 415
    assert await seen.call(http, "POST", url, json={"message": "x" * 100_000}, headers=good) == 400
    model.faults = [500, 401, 500]
    statuses = [await seen.call(http, "POST", url, json={"message": "still there?"}, headers=good) for _ in range(3)]
    assert all(status >= 500 for status in statuses), statuses


async def alerts(seen: Seen, http: aiohttp.ClientSession, entry: str, api: Platforms) -> None:
    url = entry + "/alerts/alertmanager"
    payload = {"version": "4", "status": "firing", "receiver": "bot", "groupLabels": {}, "commonLabels": {},
               "commonAnnotations": {}, "externalURL": "http://am", "alerts": [
                   {"status": "firing", "labels": {"alertname": "BotDown", "severity": "page"},
                    "annotations": {"summary": "down"}, "startsAt": "2026-01-01T00:00:00Z"}]}
    good = {"Authorization": f"Bearer {ALERTS_RECEIVER_TOKEN}"}
    assert await seen.call(http, "POST", url, json=payload, headers=good) == 200
    api.robot_codes = [310000]
    assert await seen.call(http, "POST", url, json=payload, headers=good) == 502
    assert await seen.call(http, "POST", url, json=payload, headers={"Authorization": "Bearer wrong"}) == 401


async def dlq(seen: Seen, env: dict[str, str]) -> list[dict[str, Any]]:
    listed = await run_dlq(env, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    dead: list[dict[str, Any]] = orjson.loads(listed.stdout)["dead_letters"]
    commands = [("list",), *(("show", letter["id"]) for letter in dead), ("show", dead[0]["id"], "--json")]
    for done in await asyncio.gather(*(run_dlq(env, *args) for args in commands)):
        assert done.returncode == 0, done.stderr
        seen.texts += [done.stdout, done.stderr]
    seen.texts += [listed.stdout, listed.stderr]
    return dead


def start(name: str, module: str, env: dict[str, str], tmp_path: Path, ready: str) -> Process:
    proc = Process(name, python_module(module), env, tmp_path)
    proc.wait_http(ready)
    return proc


async def test_no_secret_reaches_a_log_a_response_a_metric_or_the_dlq_tool(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    redis = RedisServer(require_binary("redis-server"), tmp_path / "redis", password=REDIS_PASSWORD)
    redis.start()
    model = FakeModel()
    model_url = str((await aiohttp_server(model.app(), access_log=None)).make_url("/v1"))
    api = Platforms()
    api_base = str((await aiohttp_server(api.app(), access_log=None)).make_url("")).rstrip("/")
    bot_port, sidecar_port, admin_port = free_port(), free_port(), free_port()
    bot_env = {
        **feishu.env(api_base), **dingtalk.env(api_base), **telegram.env(api_base), **wecom.env(api_base),
        **slack.env(f"http://127.0.0.1:{free_port()}"),
        "BOT_PORT": str(bot_port), "BOT_DATA_DIR": str(tmp_path / "data"), "BOT_LOG_FILE": str(tmp_path / "bot.json"),
        "BOT_LOG_LEVEL": "DEBUG", "BOT_API_KEY": BOT_API_KEY, "REDIS_URL": redis.url,
        "MODEL_ENDPOINT": model_url, "MODEL_API_KEY": MODEL_API_KEY, "MODEL_MAX_RETRIES": "0",
        "MODEL_BREAKER_FAILURES": "2", "MODEL_BREAKER_RESET": "600",
        "ALERTS_PLATFORM": "dingtalk", "ALERTS_WEBHOOK_URL": f"{api_base}{ROBOT_PATH}?access_token={ALERTS_ROBOT_TOKEN}",
        "ALERTS_SECRET": ALERTS_SECRET, "ALERTS_RECEIVER_TOKEN": ALERTS_RECEIVER_TOKEN,
        "DELIVERY_MAX_ATTEMPTS": "2", "DELIVERY_BACKOFF_BASE": "0.05", "DELIVERY_BACKOFF_MAX": "0.1",
    }
    sidecar_env = {
        "SIDECAR_PORT": str(sidecar_port), "SIDECAR_ADMIN_PORT": str(admin_port),
        "SIDECAR_UPSTREAM": f"http://127.0.0.1:{bot_port}", "SIDECAR_REDIS_URL": redis.url,
        "SIDECAR_LOG_FILE": str(tmp_path / "sidecar.json"), "SIDECAR_LOG_LEVEL": "DEBUG",
        "SIDECAR_PROBE_INTERVAL": "0.2",
    }
    bot_base, entry, admin = (f"http://127.0.0.1:{port}" for port in (bot_port, sidecar_port, admin_port))
    seen = Seen()
    processes: list[Process] = []
    try:
        processes.append(await asyncio.to_thread(start, "bot", "bot", bot_env, tmp_path, bot_base + "/ready"))
        processes.append(await asyncio.to_thread(start, "sidecar", "sidecar", sidecar_env, tmp_path,
                                                 admin + "/sidecar/ready"))
        async with aiohttp.ClientSession() as http:
            for path in ("/health", "/api/health", "/ready", "/openapi.json", "/metrics"):
                await seen.call(http, "GET", entry + path)
            await callbacks(seen, http, entry, api_base)
            await chat(seen, http, entry, model)
            # Alertmanager reaches the bot directly; the public port refuses the receiver.
            assert await seen.call(http, "POST", entry + "/alerts/alertmanager", json={}) == 404
            await alerts(seen, http, bot_base, api)

            async def settled() -> bool:
                return await metric(http, bot_base, "bot_dead_letters_total") >= 4

            await eventually(settled, timeout=20, what="the refused and unreachable replies dead-lettered")
            dead = await dlq(seen, bot_env)
            assert {letter["platform"] for letter in dead} >= {"feishu", "dingtalk", "telegram", "slack"}
            # The secrets were in play: the platforms and the model saw them.
            assert api.calls(feishu.reply_path("om_ok")) and api.calls(telegram.SEND_MESSAGE)
            assert api.calls("/cgi-bin/message/send") and api.calls(ROBOT_PATH)
            assert f"Bearer {MODEL_API_KEY}" in model.auth_headers
            for url in (bot_base + "/metrics", admin + "/metrics", admin + "/sidecar/health", admin + "/sidecar/ready"):
                await seen.call(http, "GET", url)

            # Redis goes away: the outage shows in readiness, answers and logs, without its address's password.
            await asyncio.to_thread(redis.stop)
            await seen.call(http, "GET", entry + "/ready")
            body = telegram_update(601, 42)
            await seen.call(http, "POST", entry + "/telegram/webhook", data=body, headers=telegram.HEADERS)
            await seen.call(http, "POST", entry + "/api/v1/chat", json={"message": "anyone?"},
                            headers={"Authorization": f"Bearer {BOT_API_KEY}"})
            unavailable = await run_dlq(bot_env, "list")
            assert unavailable.returncode == 3
            seen.texts += [unavailable.stdout, unavailable.stderr]
            for url in (bot_base + "/metrics", admin + "/metrics"):
                await seen.call(http, "GET", url)
    finally:
        for proc in reversed(processes):
            await asyncio.to_thread(proc.stop)
        await asyncio.to_thread(redis.stop)

    logs = {name: (tmp_path / name).read_text(errors="replace")
            for name in ("bot.json", "sidecar.json", processes[0].log_path.name, processes[1].log_path.name)}
    assert all(logs.values()), [name for name, text in logs.items() if not text]
    assert "webhook rejected" in logs["bot.json"] and "queue unavailable" in logs["bot.json"]
    haystacks = {**logs, **{f"seen #{i}": text for i, text in enumerate(seen.texts)}}
    leaks = [(secret, where, text[max(0, text.find(form) - 120):text.find(form) + 80])
             for secret in SECRETS for form in {secret, quote(secret, safe="")}
             for where, text in haystacks.items() if form in text]
    assert not leaks, "secrets leaked:\n" + "\n".join(f"  {s!r} in {w}: …{t}…" for s, w, t in leaks[:10])
