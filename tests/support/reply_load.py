"""Reply timing: a model stand-in and a Telegram API stand-in in their own processes, and a driver
that posts genuine Telegram updates at a fixed rate and reads back when each reply arrived.

`python -m tests.support.reply_load model PORT LATENCY` serves OpenAI chat completions after LATENCY
seconds and counts the calls in flight; `python -m tests.support.reply_load telegram PORT` accepts
sendMessage and notes the arrival time of each reply, keyed by the update's message id it answers.
Both serve `GET /stats`. The time a reply took is its arrival at the Telegram stand-in less the
time the driver posted the update: what the user waits, measured outside the bot.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"



async def _no_models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": []})


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="OK")


class ModelStandIn:
    """An OpenAI-compatible endpoint with a fixed latency; optionally refusing with 429 above a concurrency."""

    def __init__(self, latency: float, capacity: int | None = None) -> None:
        self.latency = latency
        self.capacity = capacity
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self.refused = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.complete)
        app.router.add_get("/v1/models", _no_models)
        app.router.add_get("/stats", self.stats)
        return app

    async def complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests += 1
        if self.capacity is not None and self.in_flight >= self.capacity:
            self.refused += 1
            return web.json_response({"error": {"message": "rate limited"}}, status=429, headers={"Retry-After": "1"})
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        text = f"echo: {body['messages'][-1]['content']}"
        return web.json_response({
            "id": "chatcmpl-standin", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        })

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({
            "requests": self.requests, "max_in_flight": self.max_in_flight, "in_flight": self.in_flight,
            "refused": self.refused,
        })


class TelegramStandIn:
    """sendMessage that notes when each reply arrived; `POST /outage?seconds=N` answers 502 for N seconds."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.fallbacks = 0  # replies that are the bot's apology, not the model's answer
        self.duplicates = 0
        self.refused = 0
        self.down_until = 0.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self.send_message)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/outage", self.outage)
        app.router.add_get("/health", _ok)
        return app

    async def send_message(self, request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.json()
        if arrived < self.down_until:
            self.refused += 1
            return web.json_response({"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502)
        message_id = int(body["reply_parameters"]["message_id"])
        if str(body.get("text", "")).startswith("Sorry, I cannot answer"):
            self.fallbacks += 1
        if message_id in self.arrivals:
            self.duplicates += 1
        else:
            self.arrivals[message_id] = arrived
        return web.json_response({"ok": True, "result": {"message_id": message_id, "chat": {"id": body["chat_id"]}}})

    async def outage(self, request: web.Request) -> web.Response:
        self.down_until = time.time() + float(request.query["seconds"])
        return web.json_response({"down_until": self.down_until})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({
            "arrivals": {str(k): v for k, v in self.arrivals.items()}, "duplicates": self.duplicates,
            "fallbacks": self.fallbacks,
            "refused": self.refused,
        })


def update(message_id: int, chat_id: int) -> dict[str, Any]:
    """A Telegram text-message update as setWebhook delivers it; update_id and message_id are the same number."""
    return {
        "update_id": message_id,
        "message": {
            "message_id": message_id, "date": int(time.time()), "text": f"question {message_id}",
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Load"},
        },
    }


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass
class ReplyRun:
    """One run's outcome, every time in seconds."""

    rate: float
    seconds: float
    sent: dict[int, float] = field(default_factory=dict)
    rejected: int = 0
    arrivals: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    fallbacks: int = 0
    max_in_flight: int = 0
    bot_cpu_seconds: float = 0.0
    model_refused: int = 0

    @property
    def latencies(self) -> list[float]:
        return [self.arrivals[i] - t for i, t in self.sent.items() if i in self.arrivals]

    @property
    def answered(self) -> int:
        return sum(1 for i in self.sent if i in self.arrivals)

    @property
    def replies_per_second(self) -> float:
        if not self.answered:
            return 0.0
        span = max(self.arrivals[i] for i in self.sent if i in self.arrivals) - min(self.sent.values())
        return self.answered / span if span > 0 else math.nan

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


async def post_updates(
    bot: str, secret: str, rate: float, seconds: float, *, first_id: int = 1, chats: int = 1000,
) -> ReplyRun:
    """Post `rate` updates a second for `seconds` (each on its own schedule, not waiting for the last)."""
    run = ReplyRun(rate, seconds)
    total = int(rate * seconds)
    url = f"{bot}/telegram/webhook"
    headers = {SECRET_HEADER: secret, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(message_id: int, chat_id: int) -> None:
            run.sent[message_id] = time.time()
            try:
                async with http.post(url, json=update(message_id, chat_id), headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        run.rejected += 1
            except aiohttp.ClientError:
                run.rejected += 1

        start = time.monotonic()
        tasks = []
        for n in range(total):
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            message_id = first_id + n
            tasks.append(asyncio.create_task(one(message_id, 10_000 + message_id % chats)))
        await asyncio.gather(*tasks)
    return run


async def collect(run: ReplyRun, telegram: str, model: str | None, *, timeout: float) -> ReplyRun:
    """Wait (bounded) until every posted update has its reply at the Telegram stand-in, then read the counts."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{telegram}/stats") as resp:
                stats = await resp.json()
            run.arrivals = {int(k): v for k, v in stats["arrivals"].items()}
            run.duplicates = stats["duplicates"]
            run.fallbacks = stats["fallbacks"]
            if run.answered >= len(run.sent) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        if model is not None:
            async with http.get(f"{model}/stats") as resp:
                model_stats = await resp.json()
            run.max_in_flight, run.model_refused = model_stats["max_in_flight"], model_stats["refused"]
    return run


def main() -> None:
    """`python -m tests.support.reply_load model PORT LATENCY [CAPACITY]` or `... telegram PORT`."""
    import uvloop

    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "model":
        capacity = int(sys.argv[4]) if len(sys.argv) > 4 else None
        app = ModelStandIn(float(sys.argv[3]), capacity).app()
    else:
        app = TelegramStandIn().app()
    # Stand-ins must not be the bottleneck they measure: the fastest loop available.
    web.run_app(app, host="127.0.0.1", port=port, print=None, loop=uvloop.new_event_loop(), backlog=4096,
                access_log=None)


if __name__ == "__main__":
    main()
