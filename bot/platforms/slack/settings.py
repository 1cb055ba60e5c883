"""Slack app settings: the SLACK_* environment block."""

from __future__ import annotations

from pydantic import SecretStr

from bot.platforms.base import PlatformSettings


class SlackSettings(PlatformSettings):
    signing_secret: SecretStr
    bot_token: SecretStr  # xoxb-…: bot tokens do not expire, so no token cache is needed
    api_base: str = "https://slack.com"
    # SLACK_STREAM_REPLIES=true: post a reply early and chat.update it as the model writes (off by
    # default: every update is a Web API call against the app's rate tier).
    stream_replies: bool = False
