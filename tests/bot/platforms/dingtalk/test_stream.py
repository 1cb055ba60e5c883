"""DINGTALK_MODE=stream end to end: real bot processes hold a Stream connection to a local gateway whose
frames come from dingtalk_stream's own types, acknowledge only what is queued, and answer once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.bot.platforms.connection_bots import ready, sample
from tests.bot.platforms.dingtalk.stream_gateway import CLIENT_ID, CLIENT_SECRET, ROBOT_CODE, DingTalkStreamGateway
from tests.support.bots import BotProcesses, eventually
from tests.support.redis_server import RedisServer
from tests.support.services import require_binary

SILENCE = 1.5
WORKERS = 4


@pytest.fixture
async def gateway(aiohttp_server: Any) -> DingTalkStreamGateway:
    gw = DingTalkStreamGateway(redeliver_after=1.0)
    server = await aiohttp_server(gw.app())
    gw.port = server.port
    return gw


def stream_env(gw: DingTalkStreamGateway, **extra: str) -> dict[str, str]:
    return {
        "DINGTALK_APP_KEY": CLIENT_ID, "DINGTALK_APP_SECRET": CLIENT_SECRET, "DINGTALK_MODE": "stream",
        "DINGTALK_API_BASE": gw.base, "DINGTALK_SESSION_WEBHOOK_HOSTS": "127.0.0.1",
        "DINGTALK_SILENCE_SECONDS": str(SILENCE), "DINGTALK_RECONNECT_BASE_SECONDS": "0.1",
        "DINGTALK_RECONNECT_MAX_SECONDS": "0.5",
        # Every test message goes to one group; DingTalk's 20 a minute would hold back the burst.
        "DINGTALK_OUTBOUND_LIMIT": "1000/minute", "BOT_WORKERS": str(WORKERS), **extra,
    }


async def connected(gw: DingTalkStreamGateway, count: int = 1) -> None:
    await eventually(lambda: _true(len(gw.connections) >= count and bool(gw.live())),
                     what=f"connection {count} to the gateway")


async def _true(value: bool) -> bool:
    return value


async def answered(gw: DingTalkStreamGateway, msg_id: str, timeout: float = 10.0) -> None:
    await eventually(lambda: _true(gw.replies_for(msg_id) >= 1), timeout, what=f"a reply to {msg_id}")


async def test_a_message_is_acknowledged_once_queued_and_answered_once(
    gateway: DingTalkStreamGateway, bots: BotProcesses
) -> None:
    proc, base = await bots.start(stream_env(gateway))
    await connected(gateway)
    await eventually(lambda: _ready(base), what="/ready with the connection up")

    opened = gateway.opens[0]
    assert opened["clientId"] == CLIENT_ID and opened["clientSecret"] == CLIENT_SECRET
    assert opened["subscriptions"] == [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]

    frame_id = await gateway.send_message("msg-hello", "hello")
    await answered(gateway, "msg-hello")
    await eventually(lambda: _true(gateway.acked.get(frame_id) == 1), what="the ACK")
    [ack] = [a for a in gateway.current().acks if a["headers"]["messageId"] == frame_id]
    assert ack["code"] == 200 and ack["headers"]["contentType"] == "application/json"
    assert json.loads(ack["data"]) == {"response": None}
    [(_, reply)] = gateway.replies
    assert reply["msgtype"] == "text" and reply["text"]["content"]
    assert reply["at"] == {"atUserIds": ["staff-stream-1"]}

    # A system ping is answered with its data echoed.
    ping_id = await gateway.system("ping", {"opaque": "7f3c"})
    await eventually(lambda: _true(any(a["headers"]["messageId"] == ping_id for a in gateway.current().acks)),
                     what="the ping's answer")
    [pong] = [a for a in gateway.current().acks if a["headers"]["messageId"] == ping_id]
    assert pong["code"] == 200 and json.loads(pong["data"]) == {"opaque": "7f3c"}

    assert await sample(base, "bot_platform_connection_up", platform="dingtalk") == 1
    assert time.time() - await sample(base, "bot_platform_last_frame_timestamp_seconds", platform="dingtalk") < 5
    await asyncio.sleep(1.2)
    assert gateway.replies_for("msg-hello") == 1
    assert CLIENT_SECRET not in proc.output()


async def test_with_streaming_on_the_reply_is_an_ai_card_here_too(
    gateway: DingTalkStreamGateway, bots: BotProcesses
) -> None:
    await bots.start(stream_env(gateway, DINGTALK_STREAM_REPLIES="true", DINGTALK_CARD_TEMPLATE_ID="tpl-stream.schema"))
    await connected(gateway)
    await gateway.send_message("msg-card", "in a card")
    await eventually(lambda: _true(bool(gateway.cards.cards) and gateway.cards.only().finalized),
                     what="the finished card")
    card = gateway.cards.only()
    assert (card.space_type, card.space_id, card.template_id) == ("IM_GROUP", "cidGroupStream==", "tpl-stream.schema")
    assert card.params["content"].endswith("you said: in a card") and card.writes[-1]["isFinalize"] is True
    [create] = gateway.cards.creates
    assert create["imGroupOpenDeliverModel"] == {"robotCode": ROBOT_CODE}
    assert gateway.cards.refusals == [] and gateway.replies == []


async def _ready(base: str) -> bool:
    status, _ = await ready(base)
    return status == 200


async def test_a_message_that_cannot_be_read_is_acknowledged_counted_and_not_answered(
    gateway: DingTalkStreamGateway, bots: BotProcesses
) -> None:
    _, base = await bots.start(stream_env(gateway))
    await connected(gateway)
    frame_id = await gateway.send_callback({"msgtype": "text", "text": {"content": "no msgId"}})
    await eventually(lambda: _true(gateway.acked.get(frame_id) == 1), what="the ACK")
    assert await sample(base, "bot_webhook_rejected_total", platform="dingtalk", reason="malformed") == 1
    await asyncio.sleep(1.2)  # acknowledged, so never sent again, and nothing to answer
    assert gateway.acked[frame_id] == 1 and gateway.replies == []


async def test_a_frame_redelivered_after_its_ack_was_lost_is_answered_once(
    gateway: DingTalkStreamGateway, bots: BotProcesses
) -> None:
    _, base = await bots.start(stream_env(gateway))
    await connected(gateway)
    frame_id = await gateway.send_message("msg-lost-ack", "are you there", drop_acks=1)
    await eventually(lambda: _true(gateway.acked.get(frame_id) == 1), what="the second ACK")
    await answered(gateway, "msg-lost-ack")
    assert await sample(base, "bot_duplicates_total", platform="dingtalk") >= 1
    await asyncio.sleep(1.5)
    assert gateway.replies_for("msg-lost-ack") == 1


async def test_a_silent_connection_is_dropped_by_the_watchdog_and_reopened(
    gateway: DingTalkStreamGateway, bots: BotProcesses
) -> None:
    _, base = await bots.start(stream_env(gateway))
    await connected(gateway)
    first = gateway.current()
    first.silent = True  # still open, but no pong, no frame: the failure TCP does not notice
    silent_from = time.monotonic()
    await connected(gateway, 2)
    second = gateway.connections[1]
    assert first.closed_at is not None
    detected, recovered = first.closed_at - silent_from, second.opened_at - silent_from
    print(f"\ndingtalk silent connection: dropped after {detected:.2f}s, new connection after {recovered:.2f}s "
          f"(silence bound {SILENCE}s)")
    # The last pong came at most a ping interval (bound / 3) before the silence began.
    assert SILENCE * 0.6 <= detected <= SILENCE + 2.0  # slack for a loaded machine
    assert recovered <= SILENCE + 3.0
    assert await sample(base, "bot_platform_reconnects_total", platform="dingtalk", reason="silent") == 1
    await eventually(lambda: _ready(base), what="/ready again")
    await gateway.send_message("msg-after-silence", "still there?")
    await answered(gateway, "msg-after-silence")


async def test_disconnect_opens_the_new_connection_before_the_old_one_goes_and_loses_nothing(
    gateway: DingTalkStreamGateway, bots: BotProcesses
) -> None:
    _, base = await bots.start(stream_env(gateway))
    await connected(gateway)
    old = gateway.current()
    await gateway.system("disconnect", {"reason": "server upgrade"}, on=old)
    # A message already on its way over the old connection still arrives there.
    await gateway.send_message("msg-on-old", "first", on=old)
    await connected(gateway, 2)
    new = gateway.connections[1]
    assert old.closed_at is None or old.closed_at >= new.opened_at, "the old socket went before the new one opened"
    await gateway.send_message("msg-on-new", "second", on=new)
    await answered(gateway, "msg-on-old")
    await answered(gateway, "msg-on-new")
    assert await sample(base, "bot_platform_reconnects_total", platform="dingtalk", reason="disconnect") == 1
    await asyncio.sleep(1.2)
    assert gateway.replies_for("msg-on-old") == 1 and gateway.replies_for("msg-on-new") == 1


async def test_refused_credentials_give_one_clear_error_and_no_storm(
    gateway: DingTalkStreamGateway, bots: BotProcesses
) -> None:
    gateway.refuse_credentials = True
    proc, base = await bots.start(stream_env(gateway, DINGTALK_BREAKER_SECONDS="60"))
    await eventually(lambda: _true(len(gateway.opens) >= 1), what="the first open")
    await asyncio.sleep(3.0)
    assert len(gateway.opens) == 1, "the bot retried refused credentials"
    status, body = await ready(base)
    assert status == 503
    assert "refused" in body["failing"]["platform:dingtalk"]
    assert await sample(base, "bot_platform_connection_breaker_open", platform="dingtalk") == 1
    assert await sample(base, "bot_platform_reconnects_total", platform="dingtalk", reason="refused") == 1
    log = proc.output()
    assert log.count("check DINGTALK_APP_KEY and DINGTALK_APP_SECRET") == 1
    assert CLIENT_SECRET not in log


async def test_a_bot_killed_mid_stream_loses_nothing_it_acknowledged(
    gateway: DingTalkStreamGateway, bots: BotProcesses
) -> None:
    env = stream_env(gateway)
    first, _ = await bots.start(env)
    await connected(gateway)
    ids = [f"msg-burst-{i}" for i in range(30)]
    frames: dict[str, str] = {}

    async def stream_messages() -> None:
        for msg_id in ids:
            frames[msg_id] = await gateway.send_message(msg_id, f"burst {msg_id}")
            await asyncio.sleep(0.02)

    sender = asyncio.create_task(stream_messages())
    await eventually(lambda: _true(len(gateway.acked) >= 5), what="some acknowledgements")
    await bots.kill(first)  # while messages are still coming
    acked_before_kill = {msg_id for msg_id, frame_id in frames.items() if frame_id in gateway.acked}
    await sender
    assert acked_before_kill and len(acked_before_kill) < len(ids)

    await bots.start(env)  # same data directory: the queue survives
    for msg_id in ids:  # acknowledged ones from the queue, the others redelivered by the gateway
        await answered(gateway, msg_id, timeout=20.0)
    assert acked_before_kill <= {session for session, _ in gateway.replies}
    await asyncio.sleep(1.2)
    # DingTalk has no idempotency key: a reply sent just before the kill but not yet recorded as
    # delivered goes out again. Only replies in flight at that moment (one per worker) can repeat.
    repeated = sum(gateway.replies_for(msg_id) - 1 for msg_id in ids)
    assert 0 <= repeated <= WORKERS, {m: gateway.replies_for(m) for m in ids}


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server this test may stop and start again on the same port."""
    server = RedisServer(require_binary("redis-server"), tmp_path / "redis")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


async def test_a_message_that_cannot_be_queued_is_not_acknowledged_and_is_answered_once_redis_is_back(
    gateway: DingTalkStreamGateway, bots: BotProcesses, own_redis: RedisServer
) -> None:
    proc, base = await bots.start(stream_env(gateway, REDIS_URL=own_redis.url, DINGTALK_LEASE_SECONDS="3"))
    await connected(gateway)
    await asyncio.to_thread(own_redis.stop)
    frame_id = await gateway.send_message("msg-queue-down", "is anyone there")
    await asyncio.sleep(1.5)
    assert frame_id not in gateway.acked and gateway.replies_for("msg-queue-down") == 0
    assert "left unacknowledged so DingTalk sends it again" in proc.output()

    await asyncio.to_thread(own_redis.start)  # the bot takes the lease again, reconnects, gets the frame again
    await eventually(lambda: _true(gateway.acked.get(frame_id) == 1), timeout=20, what="the ACK")
    await answered(gateway, "msg-queue-down", timeout=20)
    await asyncio.sleep(1.2)
    assert gateway.replies_for("msg-queue-down") == 1


async def test_a_refused_ticket_is_retried_with_backoff_and_never_shown(
    gateway: DingTalkStreamGateway, bots: BotProcesses
) -> None:
    gateway.refuse_tickets = True
    proc, base = await bots.start(stream_env(gateway, DINGTALK_BREAKER_FAILURES="3", DINGTALK_BREAKER_SECONDS="60"))
    await eventually(lambda: _true(len(gateway.opens) >= 3), what="three attempts")
    await asyncio.sleep(1.5)
    assert len(gateway.opens) == 3  # then the breaker holds further attempts
    status, body = await ready(base)
    assert status == 503 and "HTTP 401" in body["failing"]["platform:dingtalk"]
    for ticket in gateway.tickets:
        assert ticket not in proc.output() and ticket not in json.dumps(body)
    assert await sample(base, "bot_platform_reconnects_total", platform="dingtalk", reason="unreachable") == 3
