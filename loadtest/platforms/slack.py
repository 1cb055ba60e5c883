"""Slack Events API callbacks, signed by slack-sdk's SignatureVerifier rather than our own code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from slack_sdk.signature import SignatureVerifier

from loadtest.platforms.base import SignedRequest, now_s, unique_id

SETTINGS = ("SLACK_SIGNING_SECRET",)


@dataclass(frozen=True)
class SlackCallbacks:
    verifier: SignatureVerifier

    name = "slack"
    route = "/slack/events"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SlackCallbacks:
        return cls(SignatureVerifier(environ["SLACK_SIGNING_SECRET"]))

    def message(self, text: str, user: str, chat: str) -> SignedRequest:
        ts = now_s()
        event = {
            "type": "event_callback", "team_id": "TLOADTEST", "api_app_id": "ALOADTEST",
            "event_id": unique_id("Ev"), "event_time": ts,
            "event": {"type": "message", "channel": chat, "user": user, "text": text, "ts": f"{ts}.{unique_id()[:6]}"},
        }
        body = json.dumps(event, ensure_ascii=False)
        timestamp = str(ts)
        return SignedRequest(self.route, body.encode(), {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": self.verifier.generate_signature(timestamp=timestamp, body=body) or "",
        })
