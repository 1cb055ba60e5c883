"""The Telegram secret-token check: exact match only, constant time, any header value refused cleanly."""

from __future__ import annotations

import pytest

from bot.platforms.telegram.crypto import SECRET_TOKEN_FORMAT, secret_token_valid


def test_only_the_configured_token_passes() -> None:
    assert secret_token_valid("s3cret_-Token", "s3cret_-Token")
    assert not secret_token_valid("s3cret_-Token ", "s3cret_-Token")
    assert not secret_token_valid("s3cret_-token", "s3cret_-Token")
    assert not secret_token_valid("", "s3cret_-Token")
    assert not secret_token_valid(None, "s3cret_-Token")


def test_a_header_outside_ascii_is_refused_not_raised() -> None:
    assert not secret_token_valid("tøken\udcff", "token")


@pytest.mark.parametrize(("value", "accepted"), [("a", True), ("A-z_0-9", True), ("x" * 256, True),
                                                 ("", False), ("x" * 257, False), ("has space", False),
                                                 ("dot.ted", False)])
def test_the_format_is_what_set_webhook_accepts(value: str, accepted: bool) -> None:
    assert bool(SECRET_TOKEN_FORMAT.fullmatch(value)) is accepted
