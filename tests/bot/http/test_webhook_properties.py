"""Hostile callbacks to each platform's webhook on a real bot: a 2xx or a JSON 4xx, never a 5xx or a hang.

Adding a platform is one entry in TARGETS: the environment that switches it on, and a strategy of
requests reaching its verifier and decoder (valid credentials around hostile bodies, and hostile
everything). tests/support/hostile.py has shared material (bytes, JSON, deep nesting, XML bombs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile import encode, hostile_bodies, json_values
from tests.support.bots import running_bot
from tests.support.ports import free_port
from tests.support.raw_http import assert_clean_rejection_or_success, exchange

MAX_BODY = 64 * 1024
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    target: str  # path and query string
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class FuzzTarget:
    platform: str
    env: dict[str, str]  # switches the platform on; merged into one bot for every target
    route: str  # where its callbacks arrive (POST)
    requests: st.SearchStrategy[FuzzRequest] = field(repr=False)


def _example_requests() -> st.SearchStrategy[FuzzRequest]:
    token = st.sampled_from(["example-fuzz-token", "", "wrong", "example-fuzz-token\u00e9"])
    fields = st.fixed_dictionaries({}, optional={name: json_values for name in ("id", "chat", "user", "text", "type")})
    bodies = st.one_of(hostile_bodies, fields.map(encode))
    return st.builds(
        lambda tok, body, ctype: FuzzRequest(
            "POST", "/example/hook",
            {**({"X-Example-Token": tok} if tok.isascii() else {}), "Content-Type": ctype}, body,
        ),
        token, bodies, st.sampled_from(["application/json", "text/xml", "application/octet-stream"]),
    )


TARGETS = [
    FuzzTarget("example", {"EXAMPLE_TOKEN": "example-fuzz-token"}, "/example/hook", _example_requests()),
]


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "BOT_MAX_BODY_BYTES": str(MAX_BODY), "BOT_READ_TIMEOUT": "2", "TELEMETRY_ENABLED": "false",
        # Replies to the fuzzed messages that do get through go nowhere, once.
        "EXAMPLE_API_BASE": f"http://127.0.0.1:{free_port()}", "DELIVERY_MAX_ATTEMPTS": "1",
    }
    for target in TARGETS:
        env.update(target.env)
    with running_bot(tmp_path_factory.mktemp("webhook-fuzz"), env, "tests.support.bot_with_example") as base:
        yield base


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.platform)
def test_hostile_callbacks_get_a_2xx_or_a_json_4xx(bot: str, target: FuzzTarget) -> None:
    @FUZZ
    @given(request=target.requests)
    def check(request: FuzzRequest) -> None:
        answer = exchange(bot, request.method, request.target, request.body, request.headers)
        assert_clean_rejection_or_success(answer)

    check()


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.platform)
def test_a_body_over_the_limit_is_413(bot: str, target: FuzzTarget) -> None:
    answer = exchange(bot, "POST", target.route, b"{" + b" " * MAX_BODY + b"}", {"Content-Type": "application/json"})
    assert_clean_rejection_or_success(answer)
    assert answer.status == 413
