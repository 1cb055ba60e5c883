"""`make run REPLICAS=2` for real: two bots, each behind its own sidecar, on one Redis, behind nginx.
Telegram updates flow in through nginx while one whole replica (bot and sidecar) is killed with
SIGKILL and restarted by the supervisor; every update is answered exactly once, no client sees
the dead replica, and nginx stops choosing it within its passive-check bounds."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from telegram import Chat, Message, Update, User

from tests.support.fake_model import FakeModel
from tests.support.fake_platform import FakePlatformAPI
from tests.support.ports import free_port
from tests.support.processes import ROOT, Process, http_ok
from tests.support.services import require_binary

pytestmark = pytest.mark.slow

BOT_TOKEN = "123456789:AAreplica-test-token_0123456789"
SECRET_TOKEN = "replica-secret_token"
UPDATES = 240
RATE = 20.0  # updates per second, as a busy group chat sends them
KILL_AFTER = 60  # updates sent before the replica dies
MODEL_LATENCY = 0.5  # seconds per model call: about RATE * MODEL_LATENCY replies are being made at any time
LEASE = 5.0  # DELIVERY_LEASE_SECONDS: a reply held by a dead replica is made again after this
NGINX_CONF = (ROOT / "deploy" / "nginx" / "botwatch-replicas.conf").read_text(encoding="utf-8")
FAIL_TIMEOUT = float(re.search(r"fail_timeout=(\d+)s", NGINX_CONF).group(1))  # type: ignore[union-attr]
MAX_FAILS = int(re.search(r"max_fails=(\d+)", NGINX_CONF).group(1))  # type: ignore[union-attr]


@dataclass
class GatedModel(FakeModel):
    """The model stand-in: each call takes MODEL_LATENCY, then waits at a gate while it is closed.
    Closing it holds every reply being made, so the replica is killed while its replies wait on the
    model, where a reply spends nearly all of its time. (A kill in the milliseconds between the
    platform accepting a reply and Redis recording it would send that reply again: delivery is
    at-least-once, as docs/deploy.md says.)"""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: int = 0
    answered: int = 0

    async def _complete(self, request: Any) -> Any:
        self.arrived += 1
        await asyncio.sleep(MODEL_LATENCY)
        await self.gate.wait()
        response = await super()._complete(request)
        self.answered += 1
        return response


def update(n: int) -> dict[str, Any]:
    """A text message update as python-telegram-bot serialises it; one chat per update."""
    sent = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    message = Message(n, sent, Chat(100_000 + n, "private"), from_user=User(100_000 + n, "Replica", False),
                      text=f"msg-{n}")
    return json.loads(Update(n, message=message).to_json())


@dataclass
class Platform:
    """Telegram's side: re-delivers an update until it is acknowledged with 200, as Telegram does."""

    entry: str
    deliveries: Counter[int] = field(default_factory=Counter)
    failures: list[tuple[int, str]] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)

    async def deliver(self, http: aiohttp.ClientSession, n: int) -> None:
        body = update(n)
        for attempt in range(20):
            self.deliveries[n] += 1
            try:
                async with http.post(f"{self.entry}/telegram/webhook", json=body,
                                     headers={"X-Telegram-Bot-Api-Secret-Token": SECRET_TOKEN}) as resp:
                    if resp.status == 200:
                        self.acked.add(n)
                        return
                    self.failures.append((n, str(resp.status)))
            except aiohttp.ClientError as exc:
                self.failures.append((n, type(exc).__name__))
            await asyncio.sleep(0.5 * (attempt + 1))


async def settle(api: FakePlatformAPI, model: GatedModel) -> None:
    """Until every reply the model answered has reached the platform and a moment has passed quiet."""
    path = f"/bot{BOT_TOKEN}/sendMessage"
    quiet_since, seen = time.monotonic(), len(api.calls(path))
    deadline = time.monotonic() + 2.0  # well inside the lease, so no held reply is taken over early
    while time.monotonic() < deadline:
        if len(api.calls(path)) != seen:
            quiet_since, seen = time.monotonic(), len(api.calls(path))
        if seen >= model.answered and time.monotonic() - quiet_since > 0.2:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"replies still being sent: {seen} sent, {model.answered} answered by the model")


def state(state_dir: Path) -> dict[str, Any]:
    return json.loads((state_dir / "replicas.json").read_text(encoding="utf-8"))


def access_log(state_dir: Path) -> list[tuple[float, list[tuple[str, str]]]]:
    """(time, [(upstream address, its status), ...]) per request nginx answered."""
    rows = []
    for line in (state_dir / "nginx-access.log").read_text(encoding="utf-8").splitlines():
        match = re.match(r"(\S+) \S+ \S+ \d+ upstream=(.*?) upstream_status=(.*?) request_id=", line)
        assert match, line
        addresses = [a.strip() for a in match.group(2).split(",")]
        statuses = [s.strip() for s in match.group(3).split(",")]
        rows.append((float(match.group(1)), list(zip(addresses, statuses))))
    return rows


@pytest.mark.parametrize("victims", [("bot-1", "sidecar-1"), ("bot-1",)], ids=["whole-replica", "bot-only"])
async def test_a_replica_killed_mid_traffic_loses_and_duplicates_no_reply(
    victims: tuple[str, ...], tmp_path: Path, aiohttp_server: Any
) -> None:
    require_binary("nginx")
    require_binary("redis-server")
    api = FakePlatformAPI()
    api.on("POST", f"/bot{BOT_TOKEN}/sendMessage", {"ok": True, "result": {"message_id": 1}})
    api_server = await aiohttp_server(api.app())
    # A model that takes its time, so the killed replica dies holding replies half-made.
    model = GatedModel()
    model.gate.set()
    model_server = await aiohttp_server(model.app())
    state_dir = tmp_path / "replicas"
    listen = free_port()
    env = {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "TELEGRAM_SECRET_TOKEN": SECRET_TOKEN,
        "TELEGRAM_API_BASE": str(api_server.make_url("")).rstrip("/"),
        "MODEL_ENDPOINT": str(model_server.make_url("/v1")),
        # A job held by the killed replica is taken over by the other one after this lease.
        "DELIVERY_LEASE_SECONDS": str(LEASE),
        "SIDECAR_RATE_LIMITS": "",
    }
    supervisor = Process("run-replicas", [sys.executable, "scripts/run-replicas.py", "--replicas", "2",
                                          "--ephemeral-ports", "--listen", str(listen), "--state-dir", str(state_dir)],
                         env, tmp_path)
    try:
        await asyncio.to_thread(supervisor.wait_http, f"http://127.0.0.1:{listen}/health", 60)
        started = state(state_dir)
        platform = Platform(started["entry"])
        dead_sidecar = f"127.0.0.1:{started['ports']['sidecar-1']}"
        ports = started["ports"]

        # The supervisor brings the replica back, as a kubelet restarts a container; it serves again
        # once the bot answers and its sidecar's own probe finds it up.
        def serving_again() -> bool:
            return (all(state(state_dir)["restarts"][name] >= 1 for name in victims)
                    and http_ok(f"http://127.0.0.1:{ports['bot-1']}/health")
                    and http_ok(f"http://127.0.0.1:{ports['sidecar-admin-1']}/sidecar/ready"))

        async def watch_recovery() -> float:
            while not await asyncio.to_thread(serving_again):
                await asyncio.sleep(0.05)
            return time.time()

        async with aiohttp.ClientSession() as http:
            sends = []
            for n in range(1, UPDATES + 1):
                if n == KILL_AFTER + 1:
                    # Hold the model, let every reply it already answered reach the platform, then kill.
                    model.gate.clear()
                    await settle(api, model)
                    killed_at = time.time()
                    for name in victims:
                        os.kill(started["pids"][name], signal.SIGKILL)
                    model.gate.set()
                    recovery = asyncio.create_task(watch_recovery())
                sends.append(asyncio.create_task(platform.deliver(http, n)))
                await asyncio.sleep(1 / RATE)
            await asyncio.gather(*sends)
        assert platform.acked == set(range(1, UPDATES + 1))
        back_at = await asyncio.wait_for(recovery, 30)

        await api.wait_for(f"/bot{BOT_TOKEN}/sendMessage", count=UPDATES, timeout=60)
        await asyncio.sleep(LEASE + 1)  # past the lease: a late second reply would show up now
        sent = api.calls(f"/bot{BOT_TOKEN}/sendMessage")
        answered = Counter(int(re.search(r"msg-(\d+)", r.json()["text"]).group(1)) for r in sent)  # type: ignore[union-attr]
        lost = set(range(1, UPDATES + 1)) - set(answered)
        duplicated = {n: c for n, c in answered.items() if c > 1}
        assert (lost, duplicated) == (set(), {})
        # Replies the dead replica was making were made again, from the queue, once their lease ran out.
        remade = model.arrived - UPDATES
        assert remade >= 1, "the killed replica held no reply: the test did not exercise the takeover"

        shared = redis.Redis.from_url(started["redis_url"])
        try:
            assert shared.xlen("botwatch:{queue}:stream") == 0
            assert shared.config_get("appendonly") == {"appendonly": "yes"}
            assert shared.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        finally:
            shared.close()

        # nginx's passive check: an attempt on the dead replica failed, the request went on to the
        # other replica, and after max_fails failures nginx left it alone for fail_timeout seconds.
        rows = access_log(state_dir)
        failed = [at for at, tries in rows for address, status in tries
                  if address == dead_sidecar and at >= killed_at and status != "200"]
        assert failed, "nginx never tried the dead replica: the test did not exercise the failover"
        dead_for = back_at - killed_at
        bound = MAX_FAILS * (int(dead_for // FAIL_TIMEOUT) + 1)
        assert len(failed) <= bound, (len(failed), bound, dead_for)
        gaps = [b - a for a, b in zip(failed, failed[1:])]
        assert all(gap >= FAIL_TIMEOUT - 0.1 for gap in gaps[MAX_FAILS - 1:]), gaps
        client_errors = [status for at, tries in rows if killed_at <= at for address, status in tries[-1:]
                         if status != "200"]

        # Once fail_timeout has passed since its last failure, nginx sends to the restarted replica again.
        await asyncio.sleep(max(0.0, failed[-1] + FAIL_TIMEOUT + 0.5 - time.time()))
        async with aiohttp.ClientSession() as http:
            for _ in range(10):
                async with http.get(f"{platform.entry}/api/health") as resp:
                    assert resp.status == 200
        after = [at for at, tries in access_log(state_dir)[len(rows):]
                 for address, status in tries if address == dead_sidecar and status == "200"]
        assert after, "nginx never went back to the restarted replica"
        print(f"\nreplicas: {UPDATES} updates at {RATE:.0f}/s, {' and '.join(victims)} killed -9 after {KILL_AFTER}; "
              f"re-deliveries by the platform {sum(platform.deliveries.values()) - UPDATES}; "
              f"failed attempts nginx made on replica 1 {len(failed)} in {dead_for:.1f}s until it served again "
              f"(bound {bound}: max_fails={MAX_FAILS}, fail_timeout={FAIL_TIMEOUT:.0f}s); "
              f"answers from the last upstream tried that were not 200: {len(client_errors)}; "
              f"replies {len(sent)} (lost {len(lost)}, duplicated {len(duplicated)}; model calls made again "
              f"after the kill {remade}); "
              f"requests served by the restarted replica afterwards: {len(after)}")
        assert platform.failures == [], platform.failures[:10]
    finally:
        await asyncio.to_thread(supervisor.stop, 30)
    # Everything the supervisor started is gone with it.
    final = state(state_dir)
    for pid in final["pids"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def run_replicas_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_replicas", ROOT / "scripts" / "run-replicas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("run_replicas", module)  # dataclasses look their module up while building
    spec.loader.exec_module(sys.modules["run_replicas"])
    return sys.modules["run_replicas"]


def test_nginx_accepts_the_replicas_config_as_run_replicas_writes_it(tmp_path: Path) -> None:
    module = run_replicas_module()
    replicas = module.Replicas(3, tmp_path, free_port(), "redis://127.0.0.1:1/0", fixed_ports=False)
    replicas.plan()
    nginx = next(c for c in replicas.children if c.name == "nginx")
    result = subprocess.run([*nginx.argv[:-2], "-t"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    site = (tmp_path / "botwatch-replicas.conf").read_text(encoding="utf-8")
    servers = re.findall(r"server 127\.0\.0\.1:(\d+) max_fails=(\d+) fail_timeout=(\d+)s;", site)
    assert [int(port) for port, _, _ in servers] == [replicas.ports[f"sidecar-{i}"] for i in (1, 2, 3)]
    assert {(fails, timeout) for _, fails, timeout in servers} == {(str(MAX_FAILS), str(int(FAIL_TIMEOUT)))}


def test_the_replicas_config_proxies_the_same_public_paths_as_the_tls_config() -> None:
    tls = (ROOT / "deploy" / "nginx" / "botwatch.conf").read_text(encoding="utf-8")
    public = set(re.findall(r"location = (\S+)\s+\{ proxy_pass", tls))
    callbacks = re.search(r"location ~ \^/\((.*?)\)\$", NGINX_CONF).group(1).split("|")  # type: ignore[union-attr]
    others = re.findall(r"location = (\S+) \{", NGINX_CONF) + [
        f"/{p}" for p in re.search(r"location ~ \^/\((api/health\|health)\)\$", NGINX_CONF).group(1).split("|")]  # type: ignore[union-attr]
    assert {f"/{c}" for c in callbacks} | set(others) == public
    # Only callbacks may be re-sent after a replica read them (they are de-duplicated); never the chat API.
    chat = re.search(r"location = /api/v1/chat \{(.*?)\}", NGINX_CONF, flags=re.S).group(1)  # type: ignore[union-attr]
    assert "non_idempotent" not in chat


def test_make_run_with_replicas_starts_the_supervisor() -> None:
    dry = subprocess.run(["make", "-n", "run", "REPLICAS=3"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert dry.returncode == 0, dry.stderr
    assert "scripts/run-replicas.py --replicas 3" in dry.stdout
