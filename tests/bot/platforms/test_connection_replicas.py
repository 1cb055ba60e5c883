"""Replicas sharing Redis: DingTalk's Stream connection has one holder (a Redis lease, taken over within
seconds when the holder is killed -9); Feishu's long connection is held by every replica (Feishu pushes
each event to one of them)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.bot.platforms.connection_bots import ready, sample
from tests.bot.platforms.dingtalk.stream_gateway import DingTalkStreamGateway
from tests.bot.platforms.dingtalk.test_stream import stream_env
from tests.bot.platforms.feishu.test_websocket import ws_env
from tests.bot.platforms.feishu.ws_endpoint import FeishuWsEndpoint
from tests.support.bots import BotProcesses, eventually

LEASE = 2.0


async def _true(value: bool) -> bool:
    return value


async def test_one_replica_holds_the_dingtalk_stream_and_another_takes_over_after_kill_9(
    aiohttp_server: Any, bots: BotProcesses, redis_url: str
) -> None:
    gateway = DingTalkStreamGateway(redeliver_after=1.0)
    gateway.port = (await aiohttp_server(gateway.app())).port
    env = stream_env(gateway, REDIS_URL=redis_url, DINGTALK_LEASE_SECONDS=str(LEASE))
    (a, base_a), (b, base_b) = await asyncio.gather(bots.start(env, "a"), bots.start(env, "b"))
    await eventually(lambda: _true(len(gateway.live()) == 1), what="one connection")
    await asyncio.sleep(LEASE * 1.5)  # renewals keep it with one holder; the other stands by
    assert len(gateway.connections) == 1
    for base in (base_a, base_b):
        assert (await ready(base))[0] == 200  # a standby replica serves everything else
    ups = {base: await sample(base, "bot_platform_connection_up", platform="dingtalk") for base in (base_a, base_b)}
    standby = {base: await sample(base, "bot_platform_connection_standby", platform="dingtalk")
               for base in (base_a, base_b)}
    assert sorted(ups.values()) == [0, 1] and sorted(standby.values()) == [0, 1]
    holder, other = (a, base_b) if ups[base_a] == 1 else (b, base_a)

    await gateway.send_message("msg-before-kill", "hello")
    await eventually(lambda: _true(gateway.replies_for("msg-before-kill") == 1), what="a reply")

    killed_at = time.monotonic()
    await bots.kill(holder)
    await eventually(lambda: _true(len(gateway.connections) == 2 and bool(gateway.live())), timeout=LEASE * 4,
                     what="the standby's connection")
    takeover = gateway.connections[1].opened_at - killed_at
    print(f"\ndingtalk stream takeover after kill -9 of the holder: {takeover:.2f}s (lease {LEASE}s)")
    assert takeover <= LEASE + LEASE / 3 + 1.5
    assert await sample(other, "bot_platform_connection_up", platform="dingtalk") == 1
    await gateway.send_message("msg-after-kill", "anyone?")
    await eventually(lambda: _true(gateway.replies_for("msg-after-kill") == 1), what="a reply from the new holder")
    await asyncio.sleep(1.2)
    assert gateway.replies_for("msg-before-kill") == 1 and gateway.replies_for("msg-after-kill") == 1


async def test_every_replica_holds_a_feishu_connection_and_each_event_is_answered_once(
    aiohttp_server: Any, bots: BotProcesses, redis_url: str
) -> None:
    endpoint = FeishuWsEndpoint(redeliver_after=1.0)
    endpoint.port = (await aiohttp_server(endpoint.app())).port
    env = ws_env(endpoint, REDIS_URL=redis_url)
    (a, _), (b, base_b) = await asyncio.gather(bots.start(env, "a"), bots.start(env, "b"))
    await eventually(lambda: _true(len(endpoint.live()) == 2), what="two connections")
    for i, conn in enumerate(endpoint.live()):  # one event over each replica's connection
        await endpoint.push_event(f"ev_replica_{i}", "hello", on=conn)
    await eventually(lambda: _true(all(endpoint.replies_for(f"ev_replica_{i}") == 1 for i in range(2))),
                     what="both answered")
    await bots.kill(a)
    await eventually(lambda: _true(len(endpoint.live()) == 1), what="the killed replica's connection gone")
    await endpoint.push_event("ev_after_kill", "still there?")
    await eventually(lambda: _true(endpoint.replies_for("ev_after_kill") == 1), what="an answer from the survivor")
    assert (await ready(base_b))[0] == 200
