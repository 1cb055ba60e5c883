"""Slack Events API: signed JSON callbacks answered through chat.postMessage."""

from bot.platforms.base import PlatformPlugin
from bot.platforms.slack.adapter import SlackAdapter
from bot.platforms.slack.settings import SlackSettings

plugin = PlatformPlugin(
    name=SlackAdapter.name,
    env_prefix="SLACK_",
    settings_type=SlackSettings,
    required=("signing_secret", "bot_token"),
    routes=SlackAdapter.routes,
    create=SlackAdapter,
)
