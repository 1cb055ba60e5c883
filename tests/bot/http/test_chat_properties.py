"""Hostile input to the chat API of a real bot: whatever arrives, the answer is a 200 or a JSON 4xx, and it comes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.bots import running_bot
from tests.support.hostile import encode, json_values, odd_text
from tests.support.raw_http import Answer, assert_clean_rejection_or_success, exchange

API_KEY = "chat-fuzz-key-0123"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_CHARS = 500
MAX_BODY = 64 * 1024
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "BOT_API_KEY": API_KEY, "BOT_MAX_MESSAGE_CHARS": str(MAX_CHARS), "BOT_MAX_BODY_BYTES": str(MAX_BODY),
        "BOT_READ_TIMEOUT": "2",
    }
    with running_bot(tmp_path_factory.mktemp("chat-fuzz"), env) as base:
        yield base


def chat(base: str, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None) -> Answer:
    answer = exchange(base, "POST", "/api/v1/chat", body, {"Content-Type": content_type, **AUTH, **(headers or {})})
    assert_clean_rejection_or_success(answer)
    return answer


@FUZZ
@given(body=st.binary(max_size=2048), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_random_bytes_are_refused_cleanly(bot: str, body: bytes, content_type: str) -> None:
    answer = chat(bot, body, content_type)
    if content_type != "application/json":
        assert answer.status == 415


@FUZZ
@given(value=json_values)
def test_any_json_value_is_answered_or_refused_cleanly(bot: str, value: Any) -> None:
    chat(bot, encode(value))


@FUZZ
@given(message=odd_text, user_id=st.one_of(st.none(), odd_text, st.integers()), session_id=json_values)
def test_odd_unicode_in_every_field_is_answered_or_refused_cleanly(
    bot: str, message: str, user_id: Any, session_id: Any
) -> None:
    answer = chat(bot, encode({"message": message, "user_id": user_id, "session_id": session_id}))
    if answer.status == 200:
        assert answer.json()["reply"]


@FUZZ
@given(size=st.integers(MAX_CHARS + 1, 20 * MAX_CHARS), char=st.sampled_from(["a", "é", "日", "🙂"]))
def test_a_message_over_the_limit_is_400_message_too_long(bot: str, size: int, char: str) -> None:
    answer = chat(bot, encode({"message": char * size}))
    assert (answer.status, answer.json()["error"]["code"]) in {(400, "message_too_long"), (413, "payload_too_large")}


@pytest.mark.parametrize("depth", [100, 10_000, 200_000])
def test_deeply_nested_json_is_refused_cleanly(bot: str, depth: int) -> None:
    answer = chat(bot, b"[" * depth + b"]" * depth)
    assert answer.status in (400, 413)


@pytest.mark.parametrize("size", [MAX_BODY + 1, 4 * MAX_BODY])
def test_a_body_over_the_limit_is_413(bot: str, size: int) -> None:
    body = b'{"message": "' + b"x" * size + b'"}'
    assert chat(bot, body).status == 413
    # Told by Content-Length or not (chunked), the limit holds.
    answer = exchange(bot, "POST", "/api/v1/chat", body, {"Content-Type": "application/json", **AUTH}, chunked=True)
    assert_clean_rejection_or_success(answer)
    assert answer.status == 413


def test_a_malformed_chunked_body_is_a_json_400_or_408_never_a_hang(bot: str) -> None:
    # Caught by the parser when it comes with the headers, else by the read deadline.
    answer = exchange(bot, "POST", "/api/v1/chat", b"zz\r\nnot a chunk",
                      {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **AUTH})
    assert_clean_rejection_or_success(answer)
    assert (answer.status, answer.json()["error"]["code"]) in {(400, "bad_request"), (408, "request_timeout")}
    assert b"not a chunk" not in answer.body


def test_a_valid_message_is_still_answered_after_the_fuzzing(bot: str) -> None:
    answer = chat(bot, encode({"message": "still there?"}))
    assert answer.status == 200
    assert "still there?" in answer.json()["reply"]
