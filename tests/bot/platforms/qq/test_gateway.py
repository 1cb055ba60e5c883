"""QQ_MODE=websocket end to end: the bot holds a gateway session against a local gateway and answers through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from botpy.flags import Intents
from botpy.gateway import BotWebSocket as Op

from bot.keys import adapters_key
from bot.platforms.qq import plugin
from bot.platforms.qq.adapter import QQAdapter
from bot.platforms.qq.api import QQApi
from bot.platforms.qq.gateway import QQGateway
from tests.bot.platforms.harness import (
    PlatformLoop,
    StartPlatform,
    assert_nothing_leaks,
    capture_everything,
    until,
)
from tests.bot.platforms.qq.fake_qq import SECRET, TOKEN_PATH, QQOpenPlatform, event, reply_path
from tests.bot.platforms.qq.gateway_server import FakeGateway, GatewayConnection

GROUP = event("group_at_message_create.json")
C2C = event("c2c_message_create.json")
GUILD = event("at_message_create.json")
INTENTS = Intents(public_messages=True, public_guild_messages=True).value


@pytest.fixture
async def gateway(aiohttp_server: Any, qq_platform: QQOpenPlatform) -> AsyncIterator[FakeGateway]:
    fake = FakeGateway(heartbeat_interval_ms=100)
    server = await aiohttp_server(fake.app())
    qq_platform.serve_gateway(str(server.make_url("/websocket")).replace("http://", "ws://", 1))
    yield fake
    await fake.shut_down()


@pytest.fixture
async def qq_ws(start_platform: StartPlatform, qq_platform: QQOpenPlatform, gateway: FakeGateway) -> PlatformLoop:
    """The bot in websocket mode; reconnect backoff shortened so drops recover within the test."""
    return await start_platform(
        "qq",
        lambda base: qq_platform.env(base, QQ_MODE="websocket", QQ_RECONNECT_BASE_SECONDS="0.01",
                                     QQ_RECONNECT_MAX_SECONDS="0.05"),
        qq_platform.api,
    )


def adapter_of(qq: PlatformLoop) -> QQAdapter:
    adapter = qq.client.app[adapters_key]["qq"]
    assert isinstance(adapter, QQAdapter)
    return adapter


async def identified(gateway: FakeGateway, session_id: str) -> GatewayConnection:
    """Accept the next connection through hello, identify and READY."""
    conn = await gateway.next_connection()
    await conn.hello()
    await conn.expect(Op.WS_IDENTITY)
    await conn.ready(session_id)
    return conn


async def test_a_session_survives_drops_op_7_and_op_9_and_every_message_is_answered_once(
    qq_ws: PlatformLoop, qq_platform: QQOpenPlatform, gateway: FakeGateway
) -> None:
    qq = qq_ws
    # Hello, identify with the token and intents, heartbeats at the server's interval.
    first = await gateway.next_connection()
    await first.hello()
    identify = await first.expect(Op.WS_IDENTITY)
    assert identify["token"] == "QQBot access-1"
    assert identify["intents"] == INTENTS
    assert identify["shard"] == [0, 1]
    assert isinstance(identify["properties"], dict)
    beat = await first.next_heartbeat()
    assert beat.d is None  # nothing received yet
    await first.ready("session-1")
    later = await first.heartbeat_with(1)
    assert later.at - beat.at >= 0.09  # the server's 100 ms, not a faster local guess

    # A dispatched message is queued and answered through the passive-reply API.
    seq = await first.dispatch("GROUP_AT_MESSAGE_CREATE", GROUP["d"])
    [reply] = await qq.api.wait_for(reply_path(GROUP))
    assert reply.headers["Authorization"] == "QQBot access-1"
    assert reply.json()["msg_id"] == GROUP["d"]["id"]
    await first.heartbeat_with(seq)

    # A dropped connection is resumed with the session and the last seq; missed events are replayed.
    await first.drop()
    second = await gateway.next_connection()
    await second.hello()
    assert await second.expect(Op.WS_RESUME) == {"token": "QQBot access-1", "session_id": "session-1", "seq": seq}
    await second.dispatch("GROUP_AT_MESSAGE_CREATE", GROUP["d"])  # pushed again: must not be answered twice
    await second.dispatch("C2C_MESSAGE_CREATE", C2C["d"])
    seq = await second.resumed()
    await qq.api.wait_for(reply_path(C2C))
    await second.heartbeat_with(seq)

    # op 7: reconnect and resume again.
    await second.send({"op": Op.WS_RECONNECT})
    third = await gateway.next_connection()
    await third.hello()
    assert await third.expect(Op.WS_RESUME) == {"token": "QQBot access-1", "session_id": "session-1", "seq": seq}
    await third.resumed()
    await third.dispatch("AT_MESSAGE_CREATE", GUILD["d"])
    await qq.api.wait_for(reply_path(GUILD))

    # op 9: the session is gone, so the next connection identifies afresh.
    await third.send({"op": Op.WS_INVALID_SESSION, "d": False})
    fourth = await gateway.next_connection()
    await fourth.hello()
    assert (await fourth.expect(Op.WS_IDENTITY))["token"] == "QQBot access-1"
    await fourth.ready("session-2")
    another = event("group_at_message_create.json", message_id="ROBOT1.0_after-op-9")
    await fourth.dispatch("GROUP_AT_MESSAGE_CREATE", another["d"])
    await qq.api.wait_for(reply_path(GROUP), count=2)

    assert [r.json()["msg_id"] for r in qq.api.calls(reply_path(GROUP))] == [GROUP["d"]["id"], another["d"]["id"]]
    assert len(qq.api.calls(reply_path(C2C))) == len(qq.api.calls(reply_path(GUILD))) == 1
    await until(lambda: qq.duplicates() == 1)
    assert qq_platform.tokens_issued == 1
    gateway_client = adapter_of(qq).gateway
    assert gateway_client is not None
    assert gateway_client.snapshot() == {"state": "ready", "session_id": "session-2", "seq": 2}

    # Shutting the bot down closes the connection and stops the task.
    await qq.client.close()
    await fourth.wait_closed()
    assert gateway_client.state == "stopped"


async def test_close_code_4004_fetches_a_new_token_and_resumes_with_it(
    qq_ws: PlatformLoop, qq_platform: QQOpenPlatform, gateway: FakeGateway
) -> None:
    first = await identified(gateway, "session-1")
    await first.close(4004)

    second = await gateway.next_connection()
    await second.hello()
    assert await second.expect(Op.WS_RESUME) == {"token": "QQBot access-2", "session_id": "session-1", "seq": 1}
    assert qq_platform.tokens_issued == 2


@pytest.mark.parametrize("code", [9001, 9005])
async def test_close_codes_that_end_the_session_lead_to_a_fresh_identify(
    qq_ws: PlatformLoop, gateway: FakeGateway, code: int
) -> None:
    first = await identified(gateway, "session-1")
    await first.close(code)

    second = await gateway.next_connection()
    await second.hello()
    assert (await second.expect(Op.WS_IDENTITY))["intents"] == INTENTS


async def test_a_gateway_that_stops_acknowledging_heartbeats_is_left_and_the_session_resumed(
    qq_ws: PlatformLoop, gateway: FakeGateway
) -> None:
    first = await identified(gateway, "session-1")
    first.ack_heartbeats = False

    await first.wait_closed()
    second = await gateway.next_connection()
    await second.hello()
    assert (await second.expect(Op.WS_RESUME))["session_id"] == "session-1"


async def test_the_gateway_never_logs_the_secret_or_the_token(
    qq_ws: PlatformLoop, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    capture_everything(caplog)
    first = await identified(gateway, "session-1")
    await first.dispatch("C2C_MESSAGE_CREATE", C2C["d"])
    await qq_ws.api.wait_for(reply_path(C2C))
    await first.drop()
    second = await gateway.next_connection()
    await second.hello()
    await second.expect(Op.WS_RESUME)
    await second.resumed()
    await until(lambda: any("resumed" in r.getMessage() for r in caplog.records))

    assert any(getattr(r, "labels.session_id", None) == "session-1" for r in caplog.records)
    assert_nothing_leaks([SECRET, "access-1"], caplog)
    assert qq_ws.api.calls(TOKEN_PATH)


async def test_an_event_that_could_not_be_queued_is_replayed_after_a_resume(
    aiohttp_server: Any, qq_platform: QQOpenPlatform, gateway: FakeGateway
) -> None:
    server = await aiohttp_server(qq_platform.api.app())
    settings = plugin.load_settings(qq_platform.env(str(server.make_url("")).rstrip("/")))
    queued: list[str] = []
    failures = [RuntimeError("queue store failed")]

    async def on_dispatch(event_type: str, d: Any) -> None:
        if failures:
            raise failures.pop()
        queued.append(d["id"])

    async with aiohttp.ClientSession() as http:
        client = QQGateway(http, QQApi(http, settings), on_dispatch, intents=INTENTS,  # type: ignore[arg-type]
                           backoff_base=0.01, backoff_max=0.05)
        client.start()
        try:
            first = await identified(gateway, "session-1")
            lost = await first.dispatch("C2C_MESSAGE_CREATE", C2C["d"])
            await first.wait_closed()  # the client leaves so that the server replays the event

            second = await gateway.next_connection()
            await second.hello()
            assert await second.expect(Op.WS_RESUME) == {
                "token": "QQBot access-1", "session_id": "session-1", "seq": lost - 1,
            }
            await second.dispatch("C2C_MESSAGE_CREATE", C2C["d"], seq=lost)
            await second.resumed()
            await until(lambda: queued == [C2C["d"]["id"]])
        finally:
            await client.close()
        assert client.state == "stopped"


async def test_a_gateway_address_that_cannot_be_had_is_asked_for_again_after_a_backoff(
    start_platform: StartPlatform, qq_platform: QQOpenPlatform, gateway: FakeGateway
) -> None:
    qq_platform.api.faults["/gateway/bot"] = [503, 502]
    await start_platform("qq", lambda base: qq_platform.env(base, QQ_MODE="websocket",
                                                            QQ_RECONNECT_BASE_SECONDS="0.01"), qq_platform.api)

    conn = await gateway.next_connection()
    await conn.hello()
    assert (await conn.expect(Op.WS_IDENTITY))["token"] == "QQBot access-1"
    assert len(qq_platform.api.calls("/gateway/bot")) == 3


async def test_ready_reports_the_gateway_until_its_session_is_up(
    qq_ws: PlatformLoop, gateway: FakeGateway
) -> None:
    first = await gateway.next_connection()
    waiting = await qq_ws.client.get("/ready")
    assert waiting.status == 503
    assert "platform:qq" in (await waiting.json())["failing"]
    await first.hello()
    await first.expect(Op.WS_IDENTITY)
    await first.ready("session-1")
    await until(lambda: adapter_of(qq_ws).gateway.snapshot()["state"] == "ready")  # type: ignore[union-attr]
    assert (await qq_ws.client.get("/ready")).status == 200
