"""Which platform callback builders exist, and which of them this environment can sign for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType

from loadtest.platforms import dingtalk, feishu, qq, slack, telegram, wecom
from loadtest.platforms.base import CallbackBuilder

_MODULES: dict[str, tuple[ModuleType, Callable[[Mapping[str, str]], CallbackBuilder]]] = {
    "feishu": (feishu, feishu.FeishuCallbacks.from_env),
    "dingtalk": (dingtalk, dingtalk.DingTalkCallbacks.from_env),
    "wecom": (wecom, wecom.WeComCallbacks.from_env),
    "qq": (qq, qq.QQCallbacks.from_env),
    "slack": (slack, slack.SlackCallbacks.from_env),
    "telegram": (telegram, telegram.TelegramCallbacks.from_env),
}
PLATFORMS = tuple(_MODULES)


def missing_settings(name: str, environ: Mapping[str, str]) -> list[str]:
    """The secrets the generator lacks to sign `name`'s callbacks (the same ones the bot is given)."""
    module, _ = _MODULES[name]
    return [key for key in module.SETTINGS if not environ.get(key)]


def builder(name: str, environ: Mapping[str, str]) -> CallbackBuilder:
    return _MODULES[name][1](environ)
