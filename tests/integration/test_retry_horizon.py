"""Retries last as long as a reply is still useful on its platform (the retry horizon), not a fixed
number of attempts: a platform outage longer than six attempts is ridden out, and past the horizon
the reply becomes a dead letter saying why. Real bot processes against a scripted platform API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson

from tests.support.bots import (
    TELEGRAM_HEADERS,
    TELEGRAM_SEND,
    TELEGRAM_WEBHOOK,
    BotProcesses,
    eventually,
    metric,
    run_dlq,
    telegram_update,
)
from tests.support.fake_platform import FakePlatformAPI

# The production ladder (1 s doubling to 300 s) scaled down a hundredfold, so a test-sized outage
# takes as many attempts as a minutes-long one does in production.
FAST_BACKOFF = {"DELIVERY_BACKOFF_BASE": "0.01", "DELIVERY_BACKOFF_MAX": "0.3"}


def _retry_lines(output: str) -> list[dict[str, object]]:
    lines = []
    for raw in output.splitlines():
        if raw.startswith("{") and "delivery attempt" in raw:
            lines.append(orjson.loads(raw))
    return lines


async def _post(base: str, update_id: int) -> None:
    async with aiohttp.ClientSession(headers=TELEGRAM_HEADERS) as http:
        async with http.post(base + TELEGRAM_WEBHOOK, data=telegram_update(update_id, "hello")) as resp:
            assert resp.status == 200


async def test_a_platform_outage_longer_than_six_attempts_is_ridden_out(
    bots: BotProcesses, tmp_path: Path, telegram_api: tuple[FakePlatformAPI, str]
) -> None:
    api, api_url = telegram_api
    api.faults[TELEGRAM_SEND] = [502] * 10_000
    proc, base = await bots.start({"TELEGRAM_API_BASE": api_url, **FAST_BACKOFF})
    await _post(base, 7001)
    # Down for 4 s: over six attempts of this ladder (the old default gave up after six).
    await api.wait_for(TELEGRAM_SEND, count=8, timeout=10)
    await asyncio.sleep(max(0.0, 4.0 - (time.monotonic() - api.calls(TELEGRAM_SEND)[0].at)))
    api.faults[TELEGRAM_SEND].clear()
    async with aiohttp.ClientSession() as http:

        async def delivered() -> bool:
            return await metric(http, base, "bot_delivery_attempts_total", outcome="delivered") == 1

        await eventually(delivered, timeout=10, what="the reply delivered after the outage")
        retries = await metric(http, base, "bot_delivery_attempts_total", outcome="retry")
        assert retries >= 6
        assert await metric(http, base, "bot_dead_letters_total") == 0
    lines = _retry_lines(proc.output())
    assert len(lines) == retries
    job_ids = {line["labels"]["job_id"] for line in lines}  # type: ignore[index]
    assert len(job_ids) == 1 and len(next(iter(job_ids))) == 32
    assert [line["labels"]["attempt"] for line in lines] == list(range(1, len(lines) + 1))  # type: ignore[index]
    assert all(line["log.level"] == "warning" for line in lines)


async def test_past_the_platforms_horizon_the_reply_is_a_dead_letter_saying_why(
    bots: BotProcesses, telegram_api: tuple[FakePlatformAPI, str]
) -> None:
    api, api_url = telegram_api
    api.faults[TELEGRAM_SEND] = [502] * 10_000
    env = {"TELEGRAM_API_BASE": api_url, "DELIVERY_RETRY_HORIZONS": "telegram=2,qq=60", **FAST_BACKOFF}
    proc, base = await bots.start(env)
    started = time.monotonic()
    await _post(base, 7002)
    async with aiohttp.ClientSession() as http:

        async def buried() -> bool:
            return await metric(http, base, "bot_dead_letters_total", platform="telegram") == 1

        await eventually(buried, timeout=10, what="a dead letter")
        buried_after = time.monotonic() - started
    # Given up on just before the horizon would pass, not after a count of attempts.
    assert 1.0 < buried_after < 5.0, buried_after  # 2 s, plus polling and a loaded machine
    listed = await run_dlq({"BOT_DATA_DIR": str(bots.workdir / "bot")}, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [dead] = orjson.loads(listed.stdout)["dead_letters"]
    assert dead["message_id"] == "7002" and dead["attempts"] >= 3
    assert dead["reason"].startswith(f"telegram retry horizon of 2s would pass before attempt {dead['attempts'] + 1};")
    assert dead["reason"].endswith("last error: platform API answered HTTP 502")
    [burial] = [orjson.loads(line) for line in proc.output().splitlines() if "moved to dead letters" in line]
    assert burial["labels"]["attempt"] == dead["attempts"] and burial["labels"]["job_id"] == dead["id"]
