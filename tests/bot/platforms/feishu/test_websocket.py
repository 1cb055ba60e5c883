"""FEISHU_MODE=websocket end to end: real bot processes hold a long connection to a local endpoint whose
frames are built and parsed with lark-oapi's own protobuf definitions, and answer each event once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import lark_oapi as lark
import pytest
from lark_oapi.api.im.v1 import P2ImMessageReceiveV1

from tests.bot.platforms.connection_bots import ready, sample
from tests.bot.platforms.feishu.conftest import APP_ID, APP_SECRET, text_event
from tests.bot.platforms.feishu.ws_endpoint import SERVICE_ID, FeishuWsEndpoint, header
from tests.support.bots import BotProcesses, eventually
from tests.support.redis_server import RedisServer
from tests.support.services import require_binary

SILENCE = 1.5


@pytest.fixture
async def endpoint(aiohttp_server: Any) -> FeishuWsEndpoint:
    ep = FeishuWsEndpoint(redeliver_after=1.0)
    server = await aiohttp_server(ep.app())
    ep.port = server.port
    return ep


def ws_env(ep: FeishuWsEndpoint, **extra: str) -> dict[str, str]:
    return {
        "FEISHU_APP_ID": APP_ID, "FEISHU_APP_SECRET": APP_SECRET, "FEISHU_MODE": "websocket",
        "FEISHU_API_BASE": ep.base, "FEISHU_SILENCE_SECONDS": str(SILENCE),
        "FEISHU_RECONNECT_BASE_SECONDS": "0.1", "FEISHU_RECONNECT_MAX_SECONDS": "0.5",
        "FEISHU_OUTBOUND_CHAT_LIMIT": "1000/second", "FEISHU_OUTBOUND_APP_LIMIT": "1000/second", **extra,
    }


async def _true(value: bool) -> bool:
    return value


async def connected(ep: FeishuWsEndpoint, count: int = 1) -> None:
    await eventually(lambda: _true(len(ep.connections) >= count and bool(ep.live())),
                     what=f"connection {count} to the endpoint")


async def answered(ep: FeishuWsEndpoint, event_id: str, timeout: float = 10.0) -> None:
    await eventually(lambda: _true(ep.replies_for(event_id) >= 1), timeout, what=f"a reply to {event_id}")


def test_the_pushed_event_is_one_lark_oapi_reads_as_a_message() -> None:
    """The oracle: lark-oapi's dispatcher parses what the endpoint pushes as im.message.receive_v1."""
    seen: list[P2ImMessageReceiveV1] = []
    handler = lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(seen.append).build()
    handler._do_without_validation(json.dumps(text_event("ev_oracle", "@_user_1 hi", "om_ev_oracle")).encode())
    assert seen[0].event.message.message_id == "om_ev_oracle"  # type: ignore[union-attr]


async def test_an_event_is_answered_with_200_once_queued_and_replied_to_once(
    endpoint: FeishuWsEndpoint, bots: BotProcesses
) -> None:
    proc, base = await bots.start(ws_env(endpoint))
    await connected(endpoint)
    await eventually(lambda: _ready(base), what="/ready with the connection up")
    assert endpoint.endpoint_calls[0] == {"AppID": APP_ID, "AppSecret": APP_SECRET}

    frame_id = await endpoint.push_event("ev_hello", "hello")
    await answered(endpoint, "ev_hello")
    await eventually(lambda: _true(endpoint.acked.get(frame_id) == 1), what="the 200 answer")
    [response] = [f for f in endpoint.current().responses if header(f, "message_id") == frame_id]
    assert json.loads(response.payload) == {"code": 200}
    assert header(response, "biz_rt") is not None and response.service == SERVICE_ID
    [(target, reply)] = endpoint.replies
    assert target == "om_ev_hello" and reply["msg_type"] == "text" and json.loads(reply["content"])["text"]

    # Pings are control frames carrying the service id from the endpoint URL.
    await eventually(lambda: _true(len(endpoint.current().pings) >= 1), what="a ping")
    ping = endpoint.current().pings[0]
    assert ping.method == 0 and ping.service == SERVICE_ID and header(ping, "type") == "ping"
    assert await sample(base, "bot_platform_connection_up", platform="feishu") == 1
    await asyncio.sleep(1.2)
    assert endpoint.replies_for("ev_hello") == 1
    assert APP_SECRET not in proc.output()


async def _ready(base: str) -> bool:
    status, _ = await ready(base)
    return status == 200


async def test_a_fragmented_event_is_reassembled_and_a_lost_answer_gives_no_second_reply(
    endpoint: FeishuWsEndpoint, bots: BotProcesses
) -> None:
    _, base = await bots.start(ws_env(endpoint))
    await connected(endpoint)
    await endpoint.push_event("ev_fragments", "in three parts", fragments=3)
    await answered(endpoint, "ev_fragments")
    frame_id = await endpoint.push_event("ev_lost_answer", "again?", drop_acks=1)
    await eventually(lambda: _true(endpoint.acked.get(frame_id) == 1), what="the second answer")
    await answered(endpoint, "ev_lost_answer")
    assert await sample(base, "bot_duplicates_total", platform="feishu") >= 1
    await asyncio.sleep(1.5)
    assert endpoint.replies_for("ev_fragments") == 1 and endpoint.replies_for("ev_lost_answer") == 1


async def test_the_servers_ping_interval_is_honoured(endpoint: FeishuWsEndpoint, bots: BotProcesses) -> None:
    endpoint.ping_interval = 1  # seconds, in ClientConfig; the watchdog alone would ping every 3 s
    await bots.start(ws_env(endpoint, FEISHU_SILENCE_SECONDS="9"))
    await connected(endpoint)
    await eventually(lambda: _true(len(endpoint.current().pings) >= 4), timeout=8.0, what="four pings")
    times = endpoint.current().ping_times
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps[1:]) < 2.0, gaps


async def test_a_silent_connection_is_dropped_by_the_watchdog_and_reopened(
    endpoint: FeishuWsEndpoint, bots: BotProcesses
) -> None:
    endpoint.ping_interval = 1
    _, base = await bots.start(ws_env(endpoint))
    await connected(endpoint)
    first = endpoint.current()
    first.silent = True
    silent_from = time.monotonic()
    await connected(endpoint, 2)
    second = endpoint.connections[1]
    assert first.closed_at is not None
    detected, recovered = first.closed_at - silent_from, second.opened_at - silent_from
    print(f"\nfeishu silent connection: dropped after {detected:.2f}s, new connection after {recovered:.2f}s "
          f"(silence bound {SILENCE}s)")
    assert SILENCE * 0.5 <= detected <= SILENCE + 2.0  # slack for a loaded machine
    assert recovered <= SILENCE + 3.0
    assert await sample(base, "bot_platform_reconnects_total", platform="feishu", reason="silent") == 1
    await endpoint.push_event("ev_after_silence", "still there?")
    await answered(endpoint, "ev_after_silence")


async def test_a_connection_closed_by_feishu_is_reopened_and_an_event_sent_meanwhile_is_answered_once(
    endpoint: FeishuWsEndpoint, bots: BotProcesses
) -> None:
    _, base = await bots.start(ws_env(endpoint))
    await connected(endpoint)
    await endpoint.close_all()
    await endpoint.push_event("ev_while_closed", "hello?")  # waits for the next connection
    await connected(endpoint, 2)
    await answered(endpoint, "ev_while_closed")
    assert await sample(base, "bot_platform_reconnects_total", platform="feishu", reason="closed") == 1
    await asyncio.sleep(1.2)
    assert endpoint.replies_for("ev_while_closed") == 1


async def test_refused_credentials_give_one_clear_error_and_no_storm(
    endpoint: FeishuWsEndpoint, bots: BotProcesses
) -> None:
    endpoint.refuse_credentials = True
    proc, base = await bots.start(ws_env(endpoint, FEISHU_BREAKER_SECONDS="60"))
    await eventually(lambda: _true(len(endpoint.endpoint_calls) >= 1), what="the first endpoint call")
    await asyncio.sleep(3.0)
    assert len(endpoint.endpoint_calls) == 1, "the bot retried refused credentials"
    status, body = await ready(base)
    assert status == 503 and "refused" in body["failing"]["platform:feishu"]
    assert await sample(base, "bot_platform_connection_breaker_open", platform="feishu") == 1
    log = proc.output()
    assert log.count("check FEISHU_APP_ID and FEISHU_APP_SECRET") == 1
    assert APP_SECRET not in log


async def test_a_bot_killed_mid_stream_loses_nothing_it_answered(
    endpoint: FeishuWsEndpoint, bots: BotProcesses
) -> None:
    env = ws_env(endpoint)
    first, _ = await bots.start(env)
    await connected(endpoint)
    ids = [f"ev_burst_{i}" for i in range(30)]
    frames: dict[str, str] = {}

    async def stream_events() -> None:
        for event_id in ids:
            frames[event_id] = await endpoint.push_event(event_id, f"burst {event_id}")
            await asyncio.sleep(0.02)

    sender = asyncio.create_task(stream_events())
    await eventually(lambda: _true(len(endpoint.acked) >= 5), what="some answers")
    await bots.kill(first)
    answered_before_kill = {e for e, frame_id in frames.items() if frame_id in endpoint.acked}
    await sender
    assert answered_before_kill and len(answered_before_kill) < len(ids)

    await bots.start(env)
    for event_id in ids:
        await answered(endpoint, event_id, timeout=20.0)
    await asyncio.sleep(1.2)
    # A reply sent just before the kill but not yet recorded goes out again after the restart, with
    # the same uuid, so Feishu shows it once.
    assert all(endpoint.replies_for(e) == 1 for e in ids), {e: endpoint.replies_for(e) for e in ids}
    assert all(endpoint.reply_posts_for(e) <= 2 for e in ids)


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server this test may stop and start again on the same port."""
    server = RedisServer(require_binary("redis-server"), tmp_path / "redis")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


async def test_an_event_that_cannot_be_queued_is_answered_500_and_replied_to_once_the_queue_is_back(
    endpoint: FeishuWsEndpoint, bots: BotProcesses, own_redis: RedisServer
) -> None:
    _, base = await bots.start(ws_env(endpoint, REDIS_URL=own_redis.url))
    await connected(endpoint)
    await asyncio.to_thread(own_redis.stop)
    frame_id = await endpoint.push_event("ev_queue_down", "is anyone there")
    await eventually(lambda: _true(any(header(f, "message_id") == frame_id for f in endpoint.current().responses)),
                     what="an answer to the event")
    answers = [json.loads(f.payload) for f in endpoint.current().responses if header(f, "message_id") == frame_id]
    assert answers[0] == {"code": 500} and frame_id not in endpoint.acked
    assert endpoint.replies_for("ev_queue_down") == 0

    await asyncio.to_thread(own_redis.start)  # Feishu keeps pushing it; now it is queued
    await eventually(lambda: _true(endpoint.acked.get(frame_id) == 1), timeout=20, what="a 200 answer")
    await answered(endpoint, "ev_queue_down", timeout=20)
    await asyncio.sleep(1.2)
    assert endpoint.replies_for("ev_queue_down") == 1
