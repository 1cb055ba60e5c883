"""DingTalk settings: the DINGTALK_* block."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, ValidationInfo, field_validator

from bot.platforms.base import RateLimits
from bot.platforms.longconn import LongConnectionSettings
from servicekit.settings import split_csv


class DingTalkSettings(LongConnectionSettings):
    """DINGTALK_APP_KEY, DINGTALK_APP_SECRET, DINGTALK_ROBOT_CODE, DINGTALK_API_BASE, DINGTALK_SESSION_WEBHOOK_HOSTS,
    DINGTALK_OUTBOUND_LIMIT, DINGTALK_MODE, the streamed-reply fields (DINGTALK_STREAM_REPLIES,
    DINGTALK_CARD_TEMPLATE_ID, DINGTALK_CARD_CONTENT_KEY, DINGTALK_STREAM_UPDATE_LIMIT,
    DINGTALK_STREAM_UPDATE_QUOTA) and, in stream mode, the long-connection fields
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
    # The AI card a streamed reply goes into: a template made in the DingTalk developer console (card
    # platform), and the variable of it the text streams into ("content" in DingTalk's own examples).
    card_template_id: str | None = None
    card_content_key: str = "content"
    # Card updates are OpenAPI calls, not robot messages. Per conversation: DingTalk documents no
    # rate for one card, so this mirrors the robot's 20 a minute (a long answer moves every 3 s).
    stream_update_limit: RateLimits = "20/minute"
    # Per app: 20 server-API calls a second on the standard edition, and a share of the organisation's
    # monthly metered-API quota (10,000 in DingTalk's own example of the limit), so updates of answers
    # in progress never spend all of it. Past either, updates are skipped; finished replies still go.
    stream_update_quota: RateLimits = "20/second;5000/month"
    # DINGTALK_STREAM_REPLIES=true: a reply starts as an AI card early and grows as the model writes.
    # Off by default: every update is an OpenAPI call, and it needs a card template set up first.
    # Declared after card_template_id, which its check reads.
    stream_replies: bool = False

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("stream_replies")
    @classmethod
    def _needs_a_card_template(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("card_template_id"):
            raise ValueError(
                "streaming needs DINGTALK_CARD_TEMPLATE_ID, the AI card template (made in the DingTalk developer "
                "console) the reply streams into; set it, or leave DINGTALK_STREAM_REPLIES off"
            )
        return value

    @field_validator("session_webhook_hosts", mode="before")
    @classmethod
    def _hosts_from_csv(cls, value: object) -> object:
        hosts = split_csv(value)
        return tuple(host.lower() for host in hosts) if isinstance(hosts, list | tuple) else hosts

    @field_validator("mode", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value
