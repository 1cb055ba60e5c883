"""Slack request signing against the documented example and slack-sdk's SignatureVerifier."""

from __future__ import annotations

import json

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.platforms.slack.crypto import request_signature
from tests.bot.platforms.slack.conftest import DATA, SIGNING_SECRET, recorded

EXAMPLE = json.loads((DATA / "official_signing_example.json").read_text())


def test_the_documented_example_signature_is_reproduced() -> None:
    assert request_signature(EXAMPLE["signing_secret"], EXAMPLE["timestamp"], EXAMPLE["body"].encode()) == \
        EXAMPLE["signature"]


@pytest.mark.parametrize("name", ["message_im.json", "app_mention.json", "url_verification.json"])
def test_our_signature_is_the_one_slack_sdk_makes_and_accepts(name: str) -> None:
    body = recorded(name)
    verifier = SignatureVerifier(SIGNING_SECRET, clock=_FixedClock(1700000000))
    ours = request_signature(SIGNING_SECRET, "1700000000", body)
    assert ours == verifier.generate_signature(timestamp="1700000000", body=body)
    assert verifier.is_valid(body=body, timestamp="1700000000", signature=ours)


def test_one_changed_byte_changes_the_signature() -> None:
    body = recorded("message_im.json")
    assert request_signature(SIGNING_SECRET, "1", body) != request_signature(SIGNING_SECRET, "1", body + b" ")
    assert request_signature(SIGNING_SECRET, "1", body) != request_signature(SIGNING_SECRET, "2", body)


class _FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now
