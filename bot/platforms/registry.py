"""Find platform plugins through the `botwatch.platforms` entry-point group."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

from bot.errors import ConfigError
from bot.platforms.base import EnabledPlatform, PlatformPlugin

GROUP = "botwatch.platforms"
log = logging.getLogger("bot.platforms")


def discover_plugins(extra: Iterable[PlatformPlugin] = ()) -> dict[str, PlatformPlugin]:
    """Every installed plugin by name, plus `extra` ones (tests register theirs this way)."""
    plugins: dict[str, PlatformPlugin] = {}
    for entry in entry_points(group=GROUP):
        plugin = entry.load()
        if not isinstance(plugin, PlatformPlugin):
            raise ConfigError(f"entry point {entry.name!r} in {GROUP} is not a PlatformPlugin")
        if plugin.name != entry.name:
            raise ConfigError(f"entry point {entry.name!r} in {GROUP} registers a plugin named {plugin.name!r}")
        plugins[plugin.name] = plugin
    for plugin in extra:
        plugins[plugin.name] = plugin
    return plugins


def load_platforms(
    environ: Mapping[str, str], extra: Iterable[PlatformPlugin] = ()
) -> dict[str, EnabledPlatform]:
    """Every configured platform with its validated settings; the others are off."""
    enabled: dict[str, EnabledPlatform] = {}
    for name, plugin in sorted(discover_plugins(extra).items()):
        block = plugin.load_settings(environ)
        if block is not None:
            enabled[name] = EnabledPlatform(plugin, block)
    return enabled
