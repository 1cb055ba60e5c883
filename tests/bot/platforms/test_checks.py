"""Shared callback checks: the timestamp window, constant-time comparison, JSON bodies."""

from __future__ import annotations

import pytest

from bot.errors import WebhookRejected
from bot.platforms.checks import json_object, require_fresh, secrets_match


@pytest.mark.parametrize("sent_at", ["1000", "1300", "700"])
def test_a_timestamp_inside_the_window_passes(sent_at: str) -> None:
    require_fresh(sent_at, now=1000.0, max_skew=300)


@pytest.mark.parametrize("sent_at", ["1301", "699", "", None, "12ab", "1e3"])
def test_a_timestamp_outside_the_window_or_unreadable_is_stale(sent_at: str | None) -> None:
    with pytest.raises(WebhookRejected) as refused:
        require_fresh(sent_at, now=1000.0, max_skew=300)
    assert (refused.value.reason, refused.value.status_override) == ("stale_timestamp", 401)


def test_secrets_match_only_when_equal_and_never_raise() -> None:
    assert secrets_match("abc", "abc")
    assert not secrets_match("abd", "abc")
    assert not secrets_match("ab", "abc")
    assert not secrets_match("äbc", "abc")


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'"s"', b"\xff"])
def test_a_body_that_is_not_a_json_object_is_malformed(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as refused:
        json_object(body)
    assert refused.value.reason == "malformed"


def test_a_json_object_is_returned() -> None:
    assert json_object(b'{"a": 1}') == {"a": 1}
