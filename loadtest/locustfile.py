"""Locust users for botwatch: chat API sessions and signed platform callbacks, every request recorded raw."""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, LoadTestShape, events, task

from loadtest.conversations import Conversation
from loadtest.platforms.base import CallbackBuilder, unique_id
from loadtest.platforms.registry import PLATFORMS, builder
from loadtest.record import Recorder
from loadtest.replies import tag
from loadtest.settings import CHAT_ROUTE, GeneratorSettings, user_class_name, weight_of
from loadtest.slo import load_gates
from loadtest.step import step_holds

SETTINGS = GeneratorSettings.from_env(os.environ)
RECORDER = Recorder()


@events.request.add_listener
def _record(name: str, response_time: float, response: Any = None, exception: Any = None, **_: Any) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    error = None if exception is None else (type(exception).__name__ + ": " + str(exception))
    RECORDER.add(name, status, float(response_time), time.time(), error)


@events.test_start.add_listener
def _started(**_: Any) -> None:
    RECORDER.started = time.time()


@events.quitting.add_listener
def _save(**_: Any) -> None:
    # quitting fires after the users have finished their last request (--stop-timeout).
    RECORDER.stopped = time.time()
    RECORDER.save(Path(SETTINGS.record_dir))


class BotwatchUser(FastHttpUser):
    """A user sending `user_rps` requests a second on average: the runner sets the rate by the user count.

    Requests leave at exponentially spaced times (a Poisson process), as independent people send
    them. A fixed pace would keep users spawned together in lockstep, hitting the service in
    bursts no real traffic has and measuring the generator's own queueing.
    """

    abstract = True

    def on_start(self) -> None:
        self.rng = random.Random()
        self.user_id = unique_id("lt")
        self.conversation = Conversation(self.rng)
        self.due = time.monotonic() + self.rng.expovariate(SETTINGS.user_rps)
        gevent.sleep(self.due - time.monotonic())

    def wait_time(self) -> float:
        now = time.monotonic()
        # A user that fell behind (slow answers) catches up by at most one request, not with a burst.
        self.due = max(self.due, now - 1 / SETTINGS.user_rps) + self.rng.expovariate(SETTINGS.user_rps)
        return max(0.0, self.due - now)

    def check(self, response: Any) -> None:
        """Hold a 2xx to the protocol; a 429 is the sidecar's to count, not a failure of the bot."""
        if response.status_code == 429:
            response.success()


class ChatUser(BotwatchUser):
    """A person chatting through the API: several turns in one session, then a new conversation."""

    weight = weight_of("chat", SETTINGS.weights)

    def on_start(self) -> None:
        super().on_start()
        self.session_id = ""
        # Each person comes from an address of their own (RFC 2544's benchmarking range), handed on as
        # a trusting proxy would; per-client rate limits then see many clients, as in production.
        address = self.rng.randrange(2**17)
        self.headers = {"X-Forwarded-For": f"198.{18 + (address >> 16)}.{(address >> 8) & 255}.{address & 255}"}
        if SETTINGS.api_key:
            self.headers["Authorization"] = f"Bearer {SETTINGS.api_key}"

    @task
    def say(self) -> None:
        message, fresh = self.conversation.next_message()
        if fresh:
            self.session_id = f"{self.user_id}-{self.conversation.number}"
        body = {"message": message, "user_id": self.user_id, "session_id": self.session_id}
        with self.client.post(CHAT_ROUTE, json=body, headers=self.headers, name=CHAT_ROUTE,
                              catch_response=True) as response:
            if response.status_code == 200:
                try:
                    reply = response.json()
                except ValueError:
                    reply = {}
                if not isinstance(reply, dict) or not isinstance(reply.get("reply"), str) or not reply["reply"]:
                    response.failure("200 without a reply")
                elif reply.get("session_id") != self.session_id:
                    response.failure("reply for another session")
            self.check(response)


class CallbackUser(BotwatchUser):
    """A platform delivering message callbacks; subclasses name the platform."""

    abstract = True
    platform = ""

    def on_start(self) -> None:
        super().on_start()
        self.callbacks: CallbackBuilder = builder(self.platform, os.environ)
        self.chat = unique_id("chat")

    @task
    def deliver(self) -> None:
        message, _ = self.conversation.next_message()
        # The reference comes back in the reply, so the platform stand-in can time it (loadtest/replies.py).
        message, ref = tag(message)
        req = self.callbacks.message(message, self.user_id, self.chat)
        posted = time.time()
        # The exact signed bytes go out; Locust documents bytes for `data`, its annotation says str.
        with self.client.request(req.method, req.url_path, data=req.body,  # type: ignore[arg-type]
                                 headers=req.headers, name=req.route, catch_response=True) as response:
            self.check(response)
            # Only a callback the bot accepted owes a reply (one cut off by the end of the run does not).
            if 200 <= response.status_code < 300:
                RECORDER.replies_sent[ref] = posted


for _platform in PLATFORMS:
    globals()[user_class_name(_platform)] = type(
        user_class_name(_platform), (CallbackUser,),
        {"platform": _platform, "weight": weight_of(_platform, SETTINGS.weights), "__module__": __name__},
    )


if SETTINGS.step is not None:
    PLAN = SETTINGS.step
    GATES = load_gates()

    class StepShape(LoadTestShape):
        """Offer a higher rate every step until the latency or error gate breaks, then stop."""

        def tick(self) -> tuple[int, float] | None:
            elapsed = self.get_run_time()
            step = int(elapsed // PLAN.step_seconds)
            if step >= len(RECORDER.steps):
                if RECORDER.steps and not _held(RECORDER.steps[-1]):
                    return None
                rate = PLAN.rate_at(step)
                if RECORDER.steps and rate <= RECORDER.steps[-1]["rate"]:
                    return None  # max_rate was reached and held for a step
                now = time.time()
                RECORDER.steps.append({"rate": rate, "start": now, "measure_from": now + PLAN.settle_seconds,
                                       "end": now + PLAN.step_seconds})
            users = math.ceil(RECORDER.steps[-1]["rate"] / SETTINGS.user_rps)
            return users, float(users)

    def _held(step: dict[str, float]) -> bool:
        return step_holds(RECORDER.as_record().window(step["measure_from"], step["end"]), GATES)
