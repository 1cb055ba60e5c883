"""`python -m bot`: run the service until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from bot import __version__
from bot.errors import ConfigError
from bot.settings import check_paths, load_settings
from servicekit.runtime import run_service

if TYPE_CHECKING:
    from bot.platforms.base import EnabledPlatform
    from bot.settings import Settings

log = logging.getLogger("bot")


async def serve(settings: Settings, platforms: dict[str, EnabledPlatform]) -> None:
    """Serve until a stop signal, then drain in-flight requests (bounded) and release everything."""
    # Imported here so `python -m bot dlq` starts without the web stack.
    from aiohttp import web

    from bot.app import create_app
    from bot.http.limits import LimitedSite

    app = create_app(settings, platforms=platforms)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.bot_shutdown_timeout)
    await runner.setup()
    site = LimitedSite(runner, settings)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    port = runner.addresses[0][1] if runner.addresses else settings.bot_port
    log.info("Server ready on port %d: %s", port, start_up_summary(settings, platforms), extra={"server.port": port})
    await stop.wait()
    log.info("Stopping: draining in-flight requests for up to %gs", settings.bot_shutdown_timeout)
    await runner.cleanup()
    log.info("Stopped")


def start_up_summary(settings: Settings, platforms: dict[str, EnabledPlatform]) -> str:
    """What an operator needs to know the bot is set up as meant: one line, no secret."""
    from urllib.parse import urlsplit

    from bot.backends.openai_compat import loggable_url
    from bot.delivery.store import sqlite_path

    if settings.model_endpoint:
        model = f"{settings.model_name} at {loggable_url(settings.model_endpoint)}"
    else:
        model = "built-in (no MODEL_ENDPOINT)"
    if settings.redis_url is not None:
        parts = urlsplit(settings.redis_url.get_secret_value())
        redis = f"{parts.hostname or parts.path}{f':{parts.port}' if parts.port else ''}"
        queue = "Redis Streams"
    else:
        redis, queue = "off", f"SQLite {sqlite_path(settings)}"
    callbacks = [
        f"{name} ({', '.join(f'{route.method} {route.path}' for route in enabled.plugin.routes)})"
        for name, enabled in sorted(platforms.items())
    ]
    shown = "; ".join(callbacks) if callbacks else "none (a platform is on when its credentials are set)"
    otlp = settings.otel_exporter_otlp_endpoint
    traces = f"OTLP to {loggable_url(otlp)}" if otlp else "not exported"
    return (
        f"model: {model}; queue: {queue}; Redis: {redis}; traces: {traces}; "
        f"platforms and callback paths to register: {shown}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="botwatch: the chatbot gateway. Settings come from the environment (see README.md); "
        "a bad one stops the start with the variable named.",
        epilog="exit codes: 0 stopped on SIGTERM/Ctrl-C, 1 could not start (port in use...), 2 bad setting or usage",
    )
    parser.add_argument("--version", action="version", version=f"botwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{serve,dlq}")
    commands.add_parser(
        "serve", help="serve webhooks and the chat API until SIGTERM or Ctrl-C (the default)",
        description="Listen on BOT_HOST:BOT_PORT (default 127.0.0.1:18789) until SIGTERM or Ctrl-C.",
    )
    # The dlq tool parses its own arguments (python -m bot dlq --help).
    commands.add_parser("dlq", help="list, show, replay or purge dead letters", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "dlq":
        from bot.dlq import main as dlq_main

        return dlq_main(args[1:])
    build_parser().parse_args(args)
    from bot.platforms.registry import load_platforms
    from servicekit.logs import configure_logging

    try:
        settings = load_settings(os.environ)
        check_paths(settings)
        settings.model_fallbacks  # noqa: B018 - a fallback list that does not line up is refused here
        platforms = load_platforms(os.environ)
    except ConfigError as exc:
        print(f"botwatch: {exc.message}", file=sys.stderr)
        return 2
    writer = configure_logging(
        settings.otel_service_name, __version__, level=settings.bot_log_level, log_file=settings.bot_log_file
    )
    return run_service("botwatch", serve(settings, platforms), writer)


if __name__ == "__main__":
    sys.exit(main())
