"""`python -m bot`: run the service until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from bot import __version__
from bot.errors import ConfigError
from bot.settings import load_settings
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
    log.info("Server ready on port %d", port, extra={"server.port": port})
    if platforms:
        log.info("Platforms on: %s", ", ".join(sorted(platforms)))
    await stop.wait()
    log.info("Stopping: draining in-flight requests for up to %gs", settings.bot_shutdown_timeout)
    await runner.cleanup()
    log.info("Stopped")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "dlq":
        from bot.dlq import main as dlq_main

        return dlq_main(args[1:])
    from bot.platforms.registry import load_platforms
    from servicekit.logs import configure_logging

    try:
        settings = load_settings(os.environ)
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
