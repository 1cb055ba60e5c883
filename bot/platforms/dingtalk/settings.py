"""DingTalk settings: the DINGTALK_* block."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator

from bot.platforms.base import RateLimits
from bot.platforms.longconn import LongConnectionSettings
from servicekit.settings import split_csv


class DingTalkSettings(LongConnectionSettings):
    """DINGTALK_APP_KEY, DINGTALK_APP_SECRET, DINGTALK_ROBOT_CODE, DINGTALK_API_BASE, DINGTALK_SESSION_WEBHOOK_HOSTS,
    DINGTALK_OUTBOUND_LIMIT, DINGTALK_MODE and, in stream mode, the long-connection fields
    (DINGTALK_SILENCE_SECONDS, DINGTALK_RECONNECT_BASE_SECONDS, ...)."""

    app_key: str
    app_secret: SecretStr
    # Usually equal to the AppKey for an enterprise-internal robot; the callback names it too.
    robot_code: str | None = None
    api_base: str = "https://api.dingtalk.com"
    # A callback's sessionWebhook is followed only to these hosts: the bot never posts where a
    # request body tells it to unless the host is DingTalk's.
    session_webhook_hosts: tuple[str, ...] = ("oapi.dingtalk.com", "api.dingtalk.com")
    # What one robot may send into one conversation: past 20 a minute DingTalk throttles it for 10 minutes.
    outbound_limit: RateLimits = "20/minute"
    # webhook: DingTalk posts to /dingtalk/callback. stream: the bot holds a Stream connection
    # (opened through DINGTALK_API_BASE), so it needs no public address.
    mode: Literal["webhook", "stream"] = "webhook"

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("session_webhook_hosts", mode="before")
    @classmethod
    def _hosts_from_csv(cls, value: object) -> object:
        hosts = split_csv(value)
        return tuple(host.lower() for host in hosts) if isinstance(hosts, list | tuple) else hosts

    @field_validator("mode", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value
