"""QQ official bot plugin: `POST /qq/callback` (webhook mode) or the WebSocket gateway (websocket mode)."""

from __future__ import annotations

from bot.platforms.base import PlatformPlugin
from bot.platforms.qq.adapter import QQAdapter
from bot.platforms.qq.settings import QQSettings

plugin = PlatformPlugin(
    name=QQAdapter.name,
    env_prefix="QQ_",
    settings_type=QQSettings,
    required=("app_id", "app_secret"),
    # Registered in both modes: in websocket mode signed callbacks are still accepted and
    # de-duplicated against gateway events by the same message id.
    routes=QQAdapter.routes,
    create=QQAdapter,
)

__all__ = ["plugin"]
